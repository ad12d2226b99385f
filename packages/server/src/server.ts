/**
 * The HTTP server: DeepInfra's inference API for FLUX.1 (so existing DeepInfra clients work unchanged), job
 * status / cancel / server-sent events, an OpenAI-compatible images endpoint, /healthz and Prometheus /metrics.
 *
 * Routes (all under /v1 need `Authorization: bearer <token>` when tokens are configured):
 *   POST   /v1/inference/black-forest-labs/FLUX-1-schnell   (FLUX-1-dev when a dev model is loaded)
 *   GET    /v1/inference/requests/:id         status: queued (position) / running (step i of n) / succeeded / failed / cancelled
 *   DELETE /v1/inference/requests/:id         cancels a queued or running job (a running one stops between steps)
 *   GET    /v1/inference/requests/:id/events  server-sent events: queued, running, step, succeeded | failed | cancelled
 *   POST   /v1/openai/images/generations      {model, prompt, n, size: "WxH", response_format: "b64_json"}
 *   GET    /healthz, GET /metrics             (no auth)
 */
import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import { FluxError, RequestValidationError, parseInferenceRequest, type InferenceRequest } from '@flux-ts/core';
import type { RgbImage } from '@flux-ts/flux';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { TokenChecker, isLoopbackHost } from './auth.ts';
import type { Generator } from './generator.ts';
import { InProcessJobQueue, QueueClosedError, QueueFullError, type JobQueue, type JobResult, type JobStatus, type Worker } from './job-queue.ts';
import { registerJobRoutes } from './job-routes.ts';
import { ServerMetrics } from './metrics.ts';
import { registerOpenAIRoutes } from './openai.ts';
import { decodeInputImage, readMultipart } from './request-body.ts';
import { apiError, dataUri, openaiError, validationBody } from './responses.ts';
import { WebhookSender, WebhookTargetError } from './webhook.ts';

export const MODEL_IDS = Object.freeze({ schnell: 'black-forest-labs/FLUX-1-schnell', dev: 'black-forest-labs/FLUX-1-dev' });

export interface ServerOptions {
  /** One generator per loaded model; each serves its variant's path (FLUX-1-schnell / FLUX-1-dev). */
  generators: readonly Generator[];
  /** Accepted bearer tokens; none means no auth (then `listen` refuses non-loopback hosts unless `noAuth`). */
  tokens?: readonly string[];
  /** Explicitly run without auth on any address. */
  noAuth?: boolean;
  /** Waiting jobs per model before 429 (default 16). */
  maxQueued?: number;
  /** Largest request body (JSON, form fields), bytes (default 16 MiB). */
  bodyLimit?: number;
  /** Largest uploaded image file (multipart), bytes (default 10 MiB). */
  uploadLimit?: number;
  /** `inference_status.cost` per generated image (default 0). */
  costPerImage?: number;
  webhookSecret?: string;
  allowPrivateWebhooks?: boolean;
  webhookAttempts?: number;
  webhookBackoffMs?: number;
  /** On close: let queued and running jobs finish ('finish', default) or cancel them ('cancel'). */
  shutdown?: 'finish' | 'cancel';
  /** A pino logger, or pino options (default: info level), or false for none. */
  logger?: Logger | Record<string, unknown> | boolean;
  /** Log prompt text at info level (default: only at debug). */
  logPrompts?: boolean;
  /** Another JobQueue implementation (built with the server's worker). Default: the in-process queue. */
  queueFactory?: (worker: Worker, onChange: (s: JobStatus, prev?: string) => void) => JobQueue;
  /** Include Node's default process metrics in /metrics (default true). */
  defaultMetrics?: boolean;
}

export interface FluxServer {
  app: FastifyInstance;
  queue: JobQueue;
  webhooks: WebhookSender;
  metrics: ServerMetrics;
  /** Starts listening; returns the base URL (http://host:port). */
  listen(opts?: { host?: string; port?: number }): Promise<string>;
  /** Graceful shutdown: stop accepting, finish or cancel jobs (`shutdown`), deliver pending webhooks, close. */
  close(): Promise<void>;
}

export class ServerConfigError extends FluxError {
  constructor(message: string) {
    super('server_config', message);
    this.name = 'ServerConfigError';
  }
}

const now = () => performance.now();

export async function createServer(opts: ServerOptions): Promise<FluxServer> {
  const generators = new Map<string, Generator>();
  for (const g of opts.generators) {
    const id = MODEL_IDS[g.variant];
    if (generators.has(id)) throw new ServerConfigError(`two models serve ${id}; load at most one schnell and one dev model`);
    generators.set(id, g);
  }
  if (generators.size === 0) throw new ServerConfigError('no model to serve; pass --model PATH');

  const auth = new TokenChecker(opts.tokens ?? []);
  const bodyLimit = opts.bodyLimit ?? 16 * 1024 * 1024;
  const uploadLimit = opts.uploadLimit ?? 10 * 1024 * 1024;
  const costPerImage = opts.costPerImage ?? 0;
  const shutdown = opts.shutdown ?? 'finish';
  const logPrompts = opts.logPrompts ?? false;

  const loggerOpt = opts.logger ?? { level: 'info' };
  const isInstance = typeof loggerOpt === 'object' && typeof (loggerOpt as Logger).child === 'function';
  const app = Fastify({
    ...(isInstance ? { loggerInstance: loggerOpt as unknown as FastifyBaseLogger } : { logger: loggerOpt as boolean | Record<string, unknown> }),
    bodyLimit,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
  });
  const log = app.log;
  const metrics = new ServerMetrics({ defaultMetrics: opts.defaultMetrics ?? true });
  const webhooks = new WebhookSender({
    allowPrivate: opts.allowPrivateWebhooks ?? false,
    secret: opts.webhookSecret,
    attempts: opts.webhookAttempts,
    backoffMs: opts.webhookBackoffMs,
    log,
  });

  // The worker: one job -> the DeepInfra response body (the same function runs in `flux worker` processes).
  const worker: Worker = createJobWorker(opts.generators, { costPerImage, log });

  const onChange = (s: JobStatus, prev?: string) => {
    const model = s.model;
    metrics.jobs.inc({ model, status: s.status });
    void Promise.all([queue.depth(model), queue.running(model)]).then(
      ([d, r]) => {
        metrics.queueDepth.set({ model }, d);
        metrics.jobsRunning.set({ model }, r);
      },
      () => {},
    );
    if (s.status === 'succeeded' && s.started_at && s.finished_at) {
      metrics.runtime.observe({ model }, (Date.parse(s.finished_at) - Date.parse(s.started_at)) / 1000);
    }
    if (s.status !== 'queued' && s.status !== 'running') {
      const level = s.status === 'failed' ? 'warn' : 'info';
      log[level]({ reqId: s.request_id, model, status: s.status, from: prev, error: s.error?.message }, 'job finished');
    }
  };
  const queue: JobQueue = opts.queueFactory?.(worker, onChange) ?? new InProcessJobQueue({ worker, maxQueued: opts.maxQueued, keepFinished: 200, onChange });

  await app.register(multipart, {
    limits: { fileSize: uploadLimit, files: 1, fields: 64, fieldSize: bodyLimit, parts: 66, headerPairs: 200 },
    throwFileSizeLimit: true,
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const isOpenAI = (req: FastifyRequest) => req.url.startsWith('/v1/openai/');

  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/v1/') || !auth.enabled) return;
    if (auth.check(req.headers.authorization)) return;
    const msg = req.headers.authorization ? 'the bearer token is not valid' : 'missing Authorization: bearer <token> header';
    reply.code(401).header('www-authenticate', 'Bearer');
    return reply.send(isOpenAI(req) ? openaiError('invalid_request_error', msg) : apiError('unauthorized', msg));
  });

  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.addHook('onResponse', async (req, reply) => {
    metrics.responses.inc({ route: req.routeOptions.url ?? 'unmatched', code: String(reply.statusCode) });
  });

  app.setNotFoundHandler((req, reply) => {
    const msg = `no route ${req.method} ${req.url.split('?')[0]}`;
    reply.code(404).send(isOpenAI(req) ? openaiError('invalid_request_error', msg) : apiError('not_found', msg));
  });

  app.setErrorHandler((err: FluxError & { statusCode?: number; code?: string }, req, reply) => {
    let status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    let message = err.message;
    let type = typeof err.code === 'string' ? err.code : 'error';
    if (status === 413) {
      type = 'payload_too_large';
      message = `the request is larger than the server's limit (body ${bodyLimit} bytes, uploaded file ${uploadLimit} bytes): ${err.message}`;
    } else if (status >= 500) {
      req.log.error({ err }, 'request failed');
      type = 'internal_error';
      message = 'internal server error (see the server log)';
      status = 500;
    }
    reply.code(status).send(isOpenAI(req) ? openaiError(status === 413 ? 'invalid_request_error' : type, message) : apiError(type, message));
  });

  /** Validates, checks the webhook, enqueues. Throws RequestValidationError / QueueFullError / QueueClosedError. */
  async function submit(req: FastifyRequest, model: string, body: Record<string, unknown>, from: 'json' | 'form') {
    const request: InferenceRequest = parseInferenceRequest(body, { from });
    let image: RgbImage | undefined;
    if (request.image !== undefined) image = decodeInputImage(request.image);
    delete request.image;
    if (request.webhook !== undefined) {
      try {
        await webhooks.check(request.webhook);
      } catch (e) {
        if (!(e instanceof WebhookTargetError)) throw e;
        throw new RequestValidationError([{ field: 'webhook', given: JSON.stringify(request.webhook), allowed: 'a public http(s) URL', message: e.message }]);
      }
    }
    const id = req.id;
    const { done } = await queue.enqueue(id, { model, request, image });
    req.log.info(
      {
        model,
        width: request.width,
        height: request.height,
        steps: request.num_inference_steps,
        num_images: request.num_images,
        img2img: image !== undefined,
        webhook: request.webhook !== undefined,
        prompt_chars: request.prompt.length,
        ...(logPrompts ? { prompt: request.prompt } : {}),
      },
      'job queued',
    );
    if (!logPrompts) req.log.debug({ prompt: request.prompt }, 'job prompt');
    return { id, request, done };
  }

  // ---- DeepInfra inference -------------------------------------------------------------------------------------------
  app.post<{ Params: { owner: string; name: string } }>('/v1/inference/:owner/:name', async (req, reply) => {
    const model = `${req.params.owner}/${req.params.name}`;
    if (!generators.has(model)) {
      return reply.code(404).send(apiError('model_not_found', `model ${model} is not served here; served: ${[...generators.keys()].join(', ')}`));
    }
    let body: Record<string, unknown>;
    let from: 'json' | 'form';
    if (req.isMultipart()) {
      body = await readMultipart(req);
      from = 'form';
    } else {
      const ct = req.headers['content-type'] ?? '';
      from = ct.startsWith('application/x-www-form-urlencoded') ? 'form' : 'json';
      body = req.body as Record<string, unknown>;
    }
    let job: Awaited<ReturnType<typeof submit>>;
    try {
      job = await submit(req, model, body, from);
    } catch (e) {
      if (e instanceof RequestValidationError) return reply.code(422).send(validationBody(e.fields, e.message));
      if (e instanceof QueueFullError) return reply.code(429).header('retry-after', String(e.retryAfterS)).send(apiError('queue_full', e.message));
      if (e instanceof QueueClosedError) return reply.code(503).send(apiError(e.code, e.message));
      throw e;
    }
    const { id, request, done } = job;

    if (request.webhook !== undefined) {
      const url = request.webhook;
      void webhooks.track(
        done.then(async (s) => {
          if (s.status === 'queued' || s.status === 'running') return; // detached at shutdown: a shared queue finishes it later
          await deliverWebhook(s, url);
        }),
      );
      return reply.send({
        request_id: id,
        inference_status: { status: 'queued', runtime_ms: 0, cost: 0, tokens_generated: 0, tokens_input: 0 },
      });
    }

    // Synchronous: a client that goes away cancels its job.
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) void Promise.resolve().then(() => queue.cancel(id, 'cancelled: the client closed the connection')).catch(() => {});
    });
    const s = await done;
    if (s.status === 'succeeded') return reply.send(s.result);
    if (s.status === 'queued' || s.status === 'running') {
      return reply.code(503).send({ ...apiError('shutting_down', `this server is shutting down; the job continues on the shared queue: poll GET /v1/inference/requests/${id}`), request_id: id });
    }
    if (s.status === 'cancelled') return reply.code(409).send({ ...apiError('cancelled', s.error?.message ?? 'cancelled'), request_id: id });
    const code = s.error?.type === 'INVALID_GENERATE_OPTIONS' ? 422 : 500;
    return reply.code(code).send({ ...apiError(s.error?.type ?? 'internal_error', s.error?.message ?? 'failed'), request_id: id });
  });

  async function deliverWebhook(s: JobStatus, url: string) {
    const payload = s.status === 'succeeded' ? s.result : failurePayload(s);
    const outcome = await webhooks.deliver(url, payload, s.request_id);
    metrics.webhooks.inc({ outcome: outcome.ok ? 'delivered' : 'failed' });
  }
  queue.adoptWebhooks?.((s, url) => webhooks.track(deliverWebhook(s, url)));

  function failurePayload(s: JobStatus) {
    return {
      request_id: s.request_id,
      inference_status: { status: 'failed', runtime_ms: 0, cost: 0, tokens_generated: 0, tokens_input: 0 },
      error: s.error ?? { type: 'internal_error', message: 'failed' },
    };
  }

  registerJobRoutes(app, queue);
  registerOpenAIRoutes(app, { models: [...generators.keys()], queue, submit });

  // ---- health and metrics ---------------------------------------------------------------------------------------------
  app.get('/healthz', async () => ({
    status: 'ok',
    models: [...generators.keys()],
    queue_depth: await queue.depth(),
    running: await queue.running(),
  }));
  app.get('/metrics', async (_req, reply) => {
    for (const m of generators.keys()) {
      metrics.queueDepth.set({ model: m }, await queue.depth(m));
      metrics.jobsRunning.set({ model: m }, await queue.running(m));
    }
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  let closing: Promise<void> | undefined;
  return {
    app,
    queue,
    webhooks,
    metrics,
    async listen({ host = '127.0.0.1', port = 8080 } = {}) {
      if (!auth.enabled && !opts.noAuth && !isLoopbackHost(host)) {
        throw new ServerConfigError(
          `refusing to listen on ${host} without auth: give --token T (or FLUX_API_TOKENS), listen on 127.0.0.1, or pass --no-auth to serve anyone who can reach ${host}`,
        );
      }
      await app.listen({ host, port });
      const addr = app.server.address();
      const p = typeof addr === 'object' && addr ? addr.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
    },
    close() {
      closing ??= (async () => {
        const httpClosed = app.close(); // stops accepting; in-flight requests finish
        await queue.close({ cancel: shutdown === 'cancel' });
        await webhooks.flush();
        await httpClosed;
        for (const g of generators.values()) await g.close?.();
      })();
      return closing;
    },
  };
}

/**
 * The job worker: one job -> the DeepInfra response body. Used by the server's in-process queue and by
 * `flux worker` processes on a shared (Redis) queue.
 */
export function createJobWorker(
  generatorList: readonly Generator[],
  opts: { costPerImage?: number; log?: { error(obj: unknown, msg: string): void } } = {},
): Worker {
  const generators = new Map<string, Generator>();
  for (const g of generatorList) generators.set(MODEL_IDS[g.variant], g);
  const costPerImage = opts.costPerImage ?? 0;
  return async (id, data, ctx) => {
    const gen = generators.get(data.model);
    if (!gen) throw new FluxError('unknown_model', `no model serves ${data.model}; load it with --model`);
    const t0 = now();
    try {
      const out = await gen.generate({ request: data.request, image: data.image }, { signal: ctx.signal, onStep: (p) => ctx.progress(p.step, p.total) });
      const runtimeMs = Math.round(now() - t0);
      return {
        images: out.pngs.map(dataUri),
        nsfw_content_detected: out.pngs.map(() => false),
        seed: out.seed,
        request_id: id,
        inference_status: {
          status: 'succeeded',
          runtime_ms: runtimeMs,
          cost: costPerImage * out.pngs.length,
          tokens_generated: 0,
          tokens_input: out.tokensInput,
        },
      } satisfies JobResult;
    } catch (e) {
      if (!(e instanceof FluxError)) opts.log?.error({ reqId: id, err: e }, 'generation failed');
      throw e;
    }
  };
}
