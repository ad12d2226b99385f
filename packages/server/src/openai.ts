/**
 * OpenAI-compatible images: POST /v1/openai/images/generations `{model, prompt, n, size: "WxH",
 * response_format: "b64_json"}` -> `{created, data: [{b64_json}]}`; errors as `{error: {message, type, param, code}}`.
 * The request goes through the same validation and queue as the DeepInfra route (n -> num_images, size -> width x
 * height; `seed` and `num_inference_steps` are accepted as extensions).
 */
import { RequestValidationError } from '@flux-ts/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { QueueClosedError, QueueFullError, type JobQueue, type JobStatus } from './job-queue.ts';
import { openaiError } from './responses.ts';

/** Validates, checks and enqueues a request body (the server's `submit`). */
export type Submit = (req: FastifyRequest, model: string, body: Record<string, unknown>, from: 'json' | 'form') => Promise<{ id: string; done: Promise<JobStatus> }>;

export function modelAliases(id: string): string[] {
  const name = id.split('/')[1]!; // FLUX-1-schnell
  return [id, name, id.replace('FLUX-1', 'FLUX.1'), name.replace('FLUX-1', 'FLUX.1')].map((s) => s.toLowerCase());
}

export function registerOpenAIRoutes(app: FastifyInstance, ctx: { models: readonly string[]; queue: JobQueue; submit: Submit }): void {
  const { models, queue, submit } = ctx;
  const OPENAI_IGNORED = new Set(['quality', 'style', 'user', 'background', 'moderation', 'output_format', 'output_compression']);
  app.post('/v1/openai/images/generations', async (req, reply) => {
    const b = req.body as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object' || Array.isArray(b)) return reply.code(400).send(openaiError('invalid_request_error', 'the body must be a JSON object'));
    const wanted = typeof b.model === 'string' ? b.model.toLowerCase() : undefined;
    const model = wanted === undefined ? models[0]! : models.find((id) => modelAliases(id).includes(wanted));
    if (!model) {
      return reply.code(404).send(openaiError('invalid_request_error', `model ${String(b.model)} is not served here; served: ${models.join(', ')}`, 'model'));
    }
    const format = b.response_format ?? 'b64_json';
    if (format !== 'b64_json') {
      return reply.code(400).send(openaiError('invalid_request_error', `response_format ${JSON.stringify(format)} is not supported; use "b64_json"`, 'response_format'));
    }
    const body: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(b)) {
      if (k === 'model' || k === 'response_format' || OPENAI_IGNORED.has(k) || v === undefined) continue;
      if (k === 'n') body.num_images = v;
      else if (k === 'size') {
        const m = typeof v === 'string' ? /^(\d+)x(\d+)$/.exec(v) : null;
        if (!m) return reply.code(400).send(openaiError('invalid_request_error', `size must be "WIDTHxHEIGHT" (e.g. "512x512"), got ${JSON.stringify(v)}`, 'size'));
        body.width = Number(m[1]);
        body.height = Number(m[2]);
      } else body[k] = v;
    }
    if ('image' in body || 'webhook' in body) {
      return reply.code(400).send(openaiError('invalid_request_error', 'image and webhook are not supported on this endpoint', 'image' in body ? 'image' : 'webhook'));
    }
    const param = (f: string) => (f === 'num_images' ? 'n' : f === 'width' || f === 'height' ? 'size' : f);
    let job: Awaited<ReturnType<Submit>>;
    try {
      job = await submit(req, model, body, 'json');
    } catch (e) {
      if (e instanceof RequestValidationError) {
        const msg = e.fields.map((f) => `${param(f.field)} (${f.field}): ${f.message}; got ${f.given}; allowed: ${f.allowed}`).join('\n');
        return reply.code(400).send(openaiError('invalid_request_error', msg, param(e.fields[0]!.field)));
      }
      if (e instanceof QueueFullError) return reply.code(429).header('retry-after', String(e.retryAfterS)).send(openaiError('rate_limit_exceeded', e.message));
      if (e instanceof QueueClosedError) return reply.code(503).send(openaiError('server_error', e.message));
      throw e;
    }
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) void Promise.resolve().then(() => queue.cancel(job.id, 'cancelled: the client closed the connection')).catch(() => {});
    });
    const s = await job.done;
    if (s.status !== 'succeeded') {
      return reply.code(s.status === 'cancelled' ? 409 : 500).send(openaiError(s.status === 'cancelled' ? 'cancelled' : 'server_error', s.error?.message ?? 'failed'));
    }
    const images = (s.result!.images as string[]).map((u) => ({ b64_json: u.slice(u.indexOf(',') + 1) }));
    return reply.send({ created: Math.floor(Date.parse(s.finished_at!) / 1000), data: images });
  });
}
