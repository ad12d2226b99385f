/**
 * POST /v1/inference/:owner/:name: DeepInfra's inference call, multipart, urlencoded or JSON.
 *
 * Three ways to wait for the result:
 * - synchronous (default): the answer is the result; a client that disconnects cancels its job;
 * - asynchronous (`Prefer: respond-async`, or `?async=true`): 202 at once with `request_id` and the status, cancel
 *   and events URLs; the job runs whether or not the client stays, and GET returns the result for --result-ttl;
 * - with a `webhook`: 200 at once with `inference_status.status = "queued"` (DeepInfra's shape), the result POSTed.
 */
import { RequestValidationError } from '@flux-ts/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerContext, Submitted } from '../context.ts';
import { errorStatus } from '../errors.ts';
import { QueueClosedError, QueueFullError } from '../job-queue.ts';
import { readMultipart } from '../request-body.ts';
import { apiError, validationBody } from '../responses.ts';

const QUEUED_STATUS = { status: 'queued', runtime_ms: 0, cost: 0, tokens_generated: 0, tokens_input: 0 };

/** Whether the client asked not to wait: `Prefer: respond-async` (RFC 7240) or `?async=true`. */
export function wantsAsync(req: FastifyRequest): boolean {
  const prefer = req.headers.prefer;
  if (typeof prefer === 'string' && prefer.split(',').some((p) => p.trim().split(';')[0]!.trim().toLowerCase() === 'respond-async')) return true;
  const q = (req.query as Record<string, unknown> | undefined)?.async;
  return q === 'true' || q === '1' || q === '';
}

/** The job's URLs, absolute on the origin the client used. */
export function jobUrls(req: FastifyRequest, id: string) {
  const base = `${req.protocol}://${req.host}/v1/inference/requests/${id}`;
  return { get: base, cancel: base, events: `${base}/events` };
}

/** The 202 of an accepted asynchronous job (also Location and Preference-Applied). */
export function sendAccepted(req: FastifyRequest, reply: FastifyReply, id: string) {
  const urls = jobUrls(req, id);
  return reply
    .code(202)
    .header('location', `/v1/inference/requests/${id}`)
    .header('preference-applied', 'respond-async')
    .send({ request_id: id, status: 'queued', inference_status: QUEUED_STATUS, urls });
}

/** Cancels the job when a synchronous client goes away before its answer. */
export function cancelOnDisconnect(ctx: ServerContext, reply: FastifyReply, id: string): void {
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) void Promise.resolve().then(() => ctx.queue.cancel(id, 'cancelled: the client closed the connection')).catch(() => {});
  });
}

export function registerInferenceRoutes(ctx: ServerContext): void {
  const { app, generators } = ctx;
  app.post<{ Params: { owner: string; name: string } }>('/v1/inference/:owner/:name', async (req, reply) => {
    const model = `${req.params.owner}/${req.params.name}`;
    if (!generators.has(model)) {
      return reply.code(404).send(apiError('model_not_found', `model ${model} is not served here; served: ${[...generators.keys()].join(', ')}`));
    }
    let body: Record<string, unknown>;
    let from: 'json' | 'form';
    if (req.isMultipart()) {
      body = await readMultipart(req, ctx.limits);
      from = 'form';
    } else {
      const ct = req.headers['content-type'] ?? '';
      from = ct.startsWith('application/x-www-form-urlencoded') ? 'form' : 'json';
      body = req.body as Record<string, unknown>;
    }
    let job: Submitted;
    try {
      job = await ctx.submit(req, model, body, { from });
    } catch (e) {
      if (e instanceof RequestValidationError) return reply.code(422).send(validationBody(e));
      if (e instanceof QueueFullError) return reply.code(429).header('retry-after', String(e.retryAfterS)).send(apiError('queue_full', e.message));
      if (e instanceof QueueClosedError) return reply.code(503).send(apiError(e.code, e.message));
      throw e;
    }
    const { id, request, done } = job;
    if (wantsAsync(req)) return sendAccepted(req, reply, id);
    if (request.webhook !== undefined) return reply.send({ request_id: id, inference_status: QUEUED_STATUS });

    cancelOnDisconnect(ctx, reply, id);
    const s = await done;
    if (s.status === 'succeeded') return reply.send(s.result);
    if (s.status === 'queued' || s.status === 'running') {
      return reply.code(503).send({ ...apiError('shutting_down', `this server is shutting down; the job continues on the shared queue: poll GET /v1/inference/requests/${id}`), request_id: id });
    }
    const type = s.error?.type ?? (s.status === 'cancelled' ? 'cancelled' : 'internal_error');
    return reply.code(errorStatus(type)).send({ ...apiError(type, s.error?.message ?? s.status), request_id: id });
  });
}
