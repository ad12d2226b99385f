/**
 * The HTTP server: DeepInfra's inference API for FLUX.1 (so existing DeepInfra clients work unchanged), job
 * status / cancel / server-sent events, OpenAI-compatible images, the OpenAPI document with its docs page, a web
 * page, /healthz and Prometheus /metrics. This file sets the server up (limits, auth, error shapes, shutdown); the
 * routes live in routes/ (inference, jobs, openai, ops, web), the job core in job-core.ts, the job worker in
 * job-worker.ts.
 *
 * Auth is deny-by-default: with tokens configured every request needs `Authorization: bearer <token>` except the
 * routes marked public (`config: { public: true }`: /healthz, /metrics, and the static page, docs and document:
 * /, /docs, /ui/*, /openapi.json). The decision is made on the route the router matched, never on the raw URL, so no
 * spelling of a path (percent-encoding, an absolute-form request target, dot segments) reaches a handler without a
 * token; an unmatched path needs a token too (401, then 404).
 *
 * Routes:
 *   POST   /v1/inference/black-forest-labs/FLUX-1-schnell   (FLUX-1-dev when a dev model is loaded); sync, async
 *                                                            (Prefer: respond-async -> 202) or webhook
 *   GET    /v1/inference/requests/:id         status: queued (position) / running (step i of n) / succeeded / failed / cancelled
 *   DELETE /v1/inference/requests/:id         cancels a queued or running job (a running one stops between steps)
 *   GET    /v1/inference/requests/:id/events  server-sent events: queued, running, step, succeeded | failed | cancelled
 *   GET    /v1/openai/models, POST /v1/openai/images/generations, POST /v1/openai/images/edits
 *   GET    /healthz, /metrics, /openapi.json, /docs, /   (public)
 *
 * Jobs and owed webhooks are kept in a JobStore: the SQLite journal (`journal` option; survives a crash), else memory;
 * with a shared (Redis) queue, in Redis. Webhooks follow Standard Webhooks and are retried on a schedule (outbox.ts).
 *
 * Limits: request bodies (`bodyLimit`, multipart counted part by part), uploads (`uploadLimit`), input images by
 * their declared size (`maxImagePixels`, read from the header; decoded only when the job runs, on the generation
 * thread), a deadline for receiving a request (`requestTimeoutMs`), per webhook attempt, and for the whole shutdown
 * (`shutdownTimeoutMs`). Errors raised by Fastify or Node (400 bad URL, 408, 414, 431) use the server's own shape.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import multipart from '@fastify/multipart';
import { FluxError } from '@flux-ts/core';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { TokenChecker, isLoopbackHost } from './auth.ts';
import { REQUEST_ID, makeSubmit, type ServerContext } from './context.ts';
import type { Generator } from './generator.ts';
import { InProcessJobQueue, type JobQueue, type JobStatus, type Worker } from './job-queue.ts';
import { SqliteJobStore } from './journal.ts';
import { createJobWorker } from './job-worker.ts';
import { ServerMetrics } from './metrics.ts';
import { MODEL_IDS } from './model-ids.ts';
import type { WebhookOutbox } from './outbox.ts';
import { apiCode, errorStatus } from './errors.ts';
import { base64Cap, type BodyLimits } from './request-body.ts';
import { apiError, openaiError } from './responses.ts';
import { registerInferenceRoutes } from './routes/inference.ts';
import { registerJobRoutes } from './routes/jobs.ts';
import { registerOpenAIRoutes } from './routes/openai.ts';
import { registerOpsRoutes } from './routes/ops.ts';
import { registerWebRoutes } from './routes/web.ts';
import { DEFAULT_RETRY_SCHEDULE_MS, WebhookSender } from './webhook.ts';


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
  /** Largest input image, in pixels as its header declares them (default 16,777,216 = 4096 x 4096). */
  maxImagePixels?: number;
  /**
   * Accept any image size that is a multiple of 16 from 128 to 2048 (1344x768, 1216x832, ...), as the library and the
   * CLI do, instead of the seed API's list (default false; the OpenAPI document describes the list).
   */
  anySize?: boolean;
  /** Time allowed to receive a whole request, headers and body, in ms (default 120 000; then 408 and close). */
  requestTimeoutMs?: number;
  /** Deadline for the whole graceful shutdown, in ms (default 300 000): then jobs are cancelled, the generation
   *  threads stopped, undelivered webhooks abandoned and every connection closed. */
  shutdownTimeoutMs?: number;
  /** Bytes of finished results kept for status look-ups without a journal (default 256 MiB; in-process queue). */
  keepFinishedBytes?: number;
  /** How long a finished job's status and result can be fetched, in seconds (default 3600). */
  resultTtlS?: number;
  /**
   * The job journal (in-process queue): an SQLite file that keeps queued jobs, interrupted ones and owed webhooks
   * across a crash (node:sqlite: Node 22.13+ or 24). Default: none (memory only); `flux serve` gives one by default.
   */
  journal?: string;
  /** Times a job is started in all; one interrupted by a crash that often fails with `interrupted` (default 2). */
  maxAttempts?: number;
  /** `inference_status.cost` per generated image (default 0). */
  costPerImage?: number;
  /** Signs webhooks (Standard Webhooks; a `whsec_<base64>` secret, or any string). */
  webhookSecret?: string;
  allowPrivateWebhooks?: boolean;
  /** Delays before the 2nd, 3rd, ... webhook attempt, in ms (default Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). */
  webhookRetryScheduleMs?: readonly number[];
  /** Shorthand for a schedule: this many attempts in all, `webhookBackoffMs` doubled each time. */
  webhookAttempts?: number;
  webhookBackoffMs?: number;
  /** Total time for one webhook attempt, connection to the end of the answer, in ms (default 10 000). */
  webhookTimeoutMs?: number;
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
  /** Owed webhook deliveries (flush, pendingCount, abortAll). */
  webhooks: WebhookOutbox;
  metrics: ServerMetrics;
  /** Starts listening; returns the base URL (http://host:port). */
  listen(opts?: { host?: string; port?: number }): Promise<string>;
  /**
   * Graceful shutdown: stop accepting, finish or cancel jobs (`shutdown`), deliver pending webhooks, close; by
   * `shutdownTimeoutMs` at the latest, when whatever is left is cancelled, abandoned and disconnected.
   */
  close(): Promise<void>;
}

export class ServerConfigError extends FluxError {
  constructor(message: string) {
    super('server_config', message);
    this.name = 'ServerConfigError';
  }
}


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
  const limits: BodyLimits = { bodyBytes: bodyLimit, uploadBytes: uploadLimit, maxImagePixels: opts.maxImagePixels ?? 4096 * 4096, sizes: opts.anySize ? 'any' : 'api' };
  const requestTimeoutMs = opts.requestTimeoutMs ?? 120_000;
  const shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 300_000;
  const costPerImage = opts.costPerImage ?? 0;
  const shutdown = opts.shutdown ?? 'finish';
  const logPrompts = opts.logPrompts ?? false;

  const loggerOpt = opts.logger ?? { level: 'info' };
  const isInstance = typeof loggerOpt === 'object' && typeof (loggerOpt as Logger).child === 'function';
  const app = Fastify({
    ...(isInstance ? { loggerInstance: loggerOpt as unknown as FastifyBaseLogger } : { logger: loggerOpt as boolean | Record<string, unknown> }),
    bodyLimit,
    // the client's own X-Request-Id when it is valid (a job's id; an invalid one is refused when a job is submitted)
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    return503OnClosing: true,
    // Receiving a request (headers and body) has a deadline; the answer may take as long as the job does.
    requestTimeout: requestTimeoutMs,
    connectionTimeout: 0,
    http: { headersTimeout: Math.min(60_000, requestTimeoutMs), connectionsCheckingInterval: Math.max(50, Math.min(5_000, requestTimeoutMs / 4)) },
    clientErrorHandler: writeClientError,
    frameworkErrors: (err, req, reply) => {
      const status = err.statusCode === 414 ? 414 : 400;
      const message = status === 414 ? 'a path segment is longer than the server accepts' : `the request path is not valid: ${err.message}`;
      void sendError(req, reply, status, status === 414 ? 'uri_too_long' : 'bad_request', message);
    },
  });
  const log = app.log;
  /** Every open connection, so the shutdown deadline can close them all. */
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const metrics = new ServerMetrics({ defaultMetrics: opts.defaultMetrics ?? true });
  const sender = new WebhookSender({ allowPrivate: opts.allowPrivateWebhooks ?? false, secret: opts.webhookSecret, timeoutMs: opts.webhookTimeoutMs });
  const resultTtlS = opts.resultTtlS ?? 3600;

  // The worker: one job -> the DeepInfra response body (the same function runs in `flux worker` processes).
  const worker: Worker = createJobWorker(opts.generators, { costPerImage, log });

  // (`queue` is unset while the queue's constructor recovers jobs from the journal: then the gauges wait for /metrics)
  let queue: JobQueue | undefined;
  const onChange = (s: JobStatus, prev?: string) => {
    const model = s.model;
    metrics.jobs.inc({ model, status: s.status });
    const q = queue;
    if (q) {
      void Promise.all([q.depth(model), q.running(model)]).then(
        ([d, r]) => {
          metrics.queueDepth.set({ model }, d);
          metrics.jobsRunning.set({ model }, r);
        },
        () => {},
      );
    }
    if (s.status === 'succeeded' && s.started_at && s.finished_at) {
      metrics.runtime.observe({ model }, (Date.parse(s.finished_at) - Date.parse(s.started_at)) / 1000);
    }
    if (s.status !== 'queued' && s.status !== 'running') {
      const level = s.status === 'failed' ? 'warn' : 'info';
      log[level]({ reqId: s.request_id, model, status: s.status, from: prev, error: s.error?.message }, 'job finished');
    }
  };
  const jobs: JobQueue =
    opts.queueFactory?.(worker, onChange) ??
    new InProcessJobQueue({
      worker,
      maxQueued: opts.maxQueued,
      keepFinished: 200,
      keepFinishedBytes: opts.keepFinishedBytes,
      resultTtlS,
      maxAttempts: opts.maxAttempts,
      ...(opts.journal ? { store: SqliteJobStore.open(opts.journal) } : {}),
      onChange,
    });
  queue = jobs;
  const webhooks = jobs.startWebhooks(sender, {
    schedule: retrySchedule(opts),
    log,
    onOutcome: (_d, outcome) => metrics.webhooks.inc({ outcome }),
  });

  await app.register(multipart, {
    // Each field is held at most up to the largest valid value (a base64 image); readMultipart counts the total.
    // Two files: the image, and an OpenAI edit's mask (refused by name rather than by a cut connection).
    limits: { fileSize: uploadLimit, files: 2, fields: 32, fieldSize: Math.min(bodyLimit, base64Cap(uploadLimit)), parts: 33, headerPairs: 100 },
    throwFileSizeLimit: true,
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  // Deny by default, decided on the matched route (see the file comment).
  app.addHook('onRequest', async (req, reply) => {
    if (!auth.enabled || isPublic(req)) return;
    if (auth.check(req.headers.authorization)) return;
    const msg = req.headers.authorization ? 'the bearer token is not valid' : 'missing Authorization: bearer <token> header';
    reply.code(401).header('www-authenticate', 'Bearer');
    return reply.send(isOpenAI(req) ? openaiError('invalid_request_error', msg) : apiError('unauthorized', msg));
  });

  let closing: Promise<void> | undefined;
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (closing) reply.header('connection', 'close'); // shutting down: no keep-alive to wait out after this answer
  });

  app.addHook('onResponse', async (req, reply) => {
    metrics.responses.inc({ route: req.routeOptions.url ?? 'unmatched', code: String(reply.statusCode) });
  });

  app.setNotFoundHandler((req, reply) => {
    const msg = `no route ${req.method} ${requestPath(req)}`;
    reply.code(404).send(isOpenAI(req) ? openaiError('invalid_request_error', msg) : apiError('not_found', msg));
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    // a library error with a code from the table gets that code's status (errors.ts); Fastify's carry their own
    let status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : err instanceof FluxError ? errorStatus(err.code) : 500;
    let message = err.message;
    // one casing for every code: a library error's code lower-cased, a framework error's (FST_ERR_...) by its status
    let type = err instanceof FluxError ? apiCode(err.code) : (FRAMEWORK_CODES[status] ?? 'bad_request');
    if (status === 413) {
      type = 'payload_too_large';
      if (!(err instanceof FluxError)) message = `the request is larger than the server's limit (body ${bodyLimit} bytes, uploaded file ${uploadLimit} bytes): ${err.message}`;
      reply.header('connection', 'close'); // do not read (and discard) the rest of an oversized body
    } else if (status >= 500) {
      req.log.error({ err }, 'request failed');
      type = 'internal_error';
      message = 'internal server error (see the server log)';
      status = 500;
    }
    reply.code(status).send(isOpenAI(req) ? openaiError(status === 413 ? 'invalid_request_error' : type, message) : apiError(type, message));
  });

  const ctx: ServerContext = {
    app,
    queue: jobs,
    generators,
    limits,
    webhooks: sender,
    metrics,
    log,
    authEnabled: auth.enabled,
    logPrompts,
    resultTtlS,
    submit: makeSubmit({ queue: jobs, generators, limits, webhooks: sender, metrics, log, authEnabled: auth.enabled, logPrompts, resultTtlS }),
  };
  registerInferenceRoutes(ctx);
  registerJobRoutes(app, jobs);
  registerOpenAIRoutes(ctx);
  registerOpsRoutes(ctx);
  registerWebRoutes(ctx);

  return {
    app,
    queue: jobs,
    webhooks,
    metrics,
    async listen({ host = '127.0.0.1', port = 8080 } = {}) {
      if (!auth.enabled && !opts.noAuth && !isLoopbackHost(host)) {
        throw new ServerConfigError(
          `refusing to listen on ${host} without auth: give --token T (or FLUX_API_TOKENS), listen on 127.0.0.1, or pass --no-auth to serve anyone who can reach ${host}`,
        );
      }
      try {
        await app.listen({ host, port });
      } catch (e) {
        throw listenError(e, host, port);
      }
      const addr = app.server.address();
      const p = typeof addr === 'object' && addr ? addr.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
    },
    close() {
      closing ??= (async () => {
        const httpClosed = app.close(); // stops accepting; in-flight requests finish
        const graceful = (async () => {
          await jobs.close({ cancel: shutdown === 'cancel' });
          await webhooks.flush(); // with a journal (or Redis) later retries stay owed there for the next start
          app.server.closeIdleConnections();
          await httpClosed;
        })();
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<'deadline'>((r) => (timer = setTimeout(() => r('deadline'), shutdownTimeoutMs)));
        const outcome = await Promise.race([graceful.then(() => 'done' as const), deadline]);
        clearTimeout(timer);
        if (outcome === 'deadline') {
          log.warn({ deadline_ms: shutdownTimeoutMs }, 'shutdown deadline reached: cancelling jobs, abandoning webhooks, closing connections');
          webhooks.abortAll();
          for (const g of generators.values()) await g.close?.({ force: true }); // a step in progress stops now
          await Promise.race([jobs.close({ cancel: true }), sleep(1000)]);
          app.server.closeAllConnections();
          for (const socket of sockets) socket.destroy(); // also those Node no longer lists (a refused, half-read request)
          await Promise.race([graceful, sleep(1000)]);
        }
        await Promise.race([webhooks.close(), sleep(2000)]);
        await jobs.closeStore();
        for (const g of generators.values()) await g.close?.();
      })();
      return closing;
    },
  };
}

/** The code of an error Fastify or Node raised, by its status (their own codes are in another casing). */
const FRAMEWORK_CODES: Record<number, string> = {
  400: 'bad_request',
  404: 'not_found',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

/** Routes reachable without a token: marked `config: { public: true }` where they are declared. */
function isPublic(req: FastifyRequest): boolean {
  return (req.routeOptions.config as { public?: boolean } | undefined)?.public === true;
}

/** The request's path, decoded when it can be (for messages and the error shape; never for auth). */
function requestPath(req: FastifyRequest): string {
  let path: string;
  try {
    path = new URL(req.url, 'http://x').pathname;
  } catch {
    return req.url.split('?')[0]!;
  }
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** OpenAI clients get OpenAI-shaped errors: decided by the matched route, else by the decoded path. */
function isOpenAI(req: FastifyRequest): boolean {
  return (req.routeOptions.url ?? requestPath(req)).startsWith('/v1/openai/');
}

function sendError(req: FastifyRequest, reply: FastifyReply, status: number, type: string, message: string) {
  return reply.code(status).send(isOpenAI(req) ? openaiError('invalid_request_error', message) : apiError(type, message));
}

/** Errors Node's HTTP parser raises before Fastify sees a request (431, 408, 400), in the server's JSON shape. */
function writeClientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, type, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'the request headers are larger than the server accepts (16 KiB)']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'the request was not received in time; send the whole request at once']
        : [400, 'bad_request', `the request is not valid HTTP (${err.code ?? 'parse error'})`];
  const body = JSON.stringify(apiError(type, message));
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** `listen` failures a user can fix, as one clear line (never an internal error). */
function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new ServerConfigError(`port ${port} on ${host} is already in use; stop the other server or pick another --port (0 picks a free one)`);
  if (code === 'EACCES') return new ServerConfigError(`no permission to listen on ${host}:${port}; ports below 1024 need privileges, pick a --port above 1024`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new ServerConfigError(`cannot listen on ${host}: it is not an address of this machine; use --host 127.0.0.1 or 0.0.0.0`);
  return e;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** The webhook retry schedule: given, or from the attempts/backoff shorthand, or Svix's. */
function retrySchedule(opts: ServerOptions): readonly number[] {
  if (opts.webhookRetryScheduleMs) return opts.webhookRetryScheduleMs;
  if (opts.webhookAttempts !== undefined || opts.webhookBackoffMs !== undefined) {
    const attempts = opts.webhookAttempts ?? 5;
    const backoff = opts.webhookBackoffMs ?? 500;
    return Array.from({ length: Math.max(0, attempts - 1) }, (_, i) => backoff * 2 ** i);
  }
  return DEFAULT_RETRY_SCHEDULE_MS;
}
