/**
 * OpenAI-compatible images, for the OpenAI SDKs (`baseURL: http://HOST/v1/openai`):
 *   GET  /v1/openai/models                  the served models
 *   POST /v1/openai/images/generations      JSON `{model, prompt, n, size: "WxH", response_format: "b64_json"}`
 *   POST /v1/openai/images/edits            multipart `image` (a PNG or JPEG file) + the same fields: image-to-image
 * -> `{created, data: [{b64_json, revised_prompt}]}`; errors as `{error: {message, type, param, code}}`.
 *
 * The request goes through the same validation and queue as the DeepInfra route (n -> num_images, size -> width x
 * height; `seed`, `num_inference_steps`, `guidance_scale` and, for edits, `strength` are accepted as extensions),
 * but absent fields take the MODEL's defaults (schnell 4 steps; dev 50 steps, guidance 3.5), not the DeepInfra
 * route's 25 steps. OpenAI fields with no meaning here (`quality`, `style`, `user`, `background`, `moderation`,
 * `output_format`, `output_compression`, `input_fidelity`) are accepted and ignored. `revised_prompt` echoes the
 * prompt (nothing rewrites it).
 */
import { RequestValidationError } from '@flux-ts/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerContext, Submitted } from '../context.ts';
import { errorStatus } from '../errors.ts';
import { QueueClosedError, QueueFullError } from '../job-queue.ts';
import { readMultipart } from '../request-body.ts';
import { openaiError } from '../responses.ts';
import { cancelOnDisconnect } from './inference.ts';

/** OpenAI fields accepted and ignored (documented in the README and the OpenAPI document). */
export const OPENAI_IGNORED = Object.freeze(['quality', 'style', 'user', 'background', 'moderation', 'output_format', 'output_compression', 'input_fidelity']);

export function modelAliases(id: string): string[] {
  const name = id.split('/')[1]!; // FLUX-1-schnell
  return [id, name, id.replace('FLUX-1', 'FLUX.1'), name.replace('FLUX-1', 'FLUX.1')].map((s) => s.toLowerCase());
}

/** Unix seconds of the first FLUX.1 release, as the models' `created` (a fixed, honest date rather than a boot time). */
const FLUX1_RELEASED = Math.floor(Date.parse('2024-08-01T00:00:00Z') / 1000);

export function registerOpenAIRoutes(ctx: ServerContext): void {
  const { app, generators } = ctx;
  const models = [...generators.keys()];

  app.get('/v1/openai/models', async () => ({
    object: 'list',
    data: models.map((id) => ({ id, object: 'model', created: FLUX1_RELEASED, owned_by: id.split('/')[0] })),
  }));

  app.post('/v1/openai/images/generations', async (req, reply) => {
    const b = req.body as Record<string, unknown> | undefined;
    if (!b || typeof b !== 'object' || Array.isArray(b)) return reply.code(400).send(openaiError('invalid_request_error', 'the body must be a JSON object'));
    if ('image' in b || 'webhook' in b) {
      return reply.code(400).send(openaiError('invalid_request_error', 'image and webhook are not supported on this endpoint (use /v1/openai/images/edits for an input image)', 'image' in b ? 'image' : 'webhook'));
    }
    return generate(ctx, req, reply, b, 'json');
  });

  app.post('/v1/openai/images/edits', async (req, reply) => {
    if (!req.isMultipart()) return reply.code(400).send(openaiError('invalid_request_error', 'send multipart/form-data with an `image` file and a `prompt`', 'image'));
    const b = await readMultipart(req, ctx.limits);
    // The SDKs send one image as `image` (or `image[]` for several); one is supported.
    if (b['image[]'] !== undefined && b.image === undefined) {
      b.image = b['image[]'];
      delete b['image[]'];
    }
    if (!(b.image instanceof Uint8Array)) return reply.code(400).send(openaiError('invalid_request_error', 'an `image` file (PNG or JPEG) is required', 'image'));
    if (b.mask !== undefined) return reply.code(400).send(openaiError('invalid_request_error', 'masks (inpainting) are not supported; send the whole image', 'mask'));
    if ('webhook' in b) return reply.code(400).send(openaiError('invalid_request_error', 'webhook is not supported on this endpoint', 'webhook'));
    return generate(ctx, req, reply, b, 'form');
  });

  async function generate(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, b: Record<string, unknown>, from: 'json' | 'form') {
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
      if (k === 'model' || k === 'response_format' || OPENAI_IGNORED.includes(k) || v === undefined) continue;
      if (k === 'n') body.num_images = v;
      else if (k === 'size') {
        if (v === 'auto') continue;
        const m = typeof v === 'string' ? /^(\d+)x(\d+)$/.exec(v) : null;
        if (!m) return reply.code(400).send(openaiError('invalid_request_error', `size must be "WIDTHxHEIGHT" (e.g. "512x512"), got ${JSON.stringify(v)}`, 'size'));
        body.width = from === 'form' ? m[1] : Number(m[1]);
        body.height = from === 'form' ? m[2] : Number(m[2]);
      } else body[k] = v;
    }
    const param = (f: string) => (f === 'num_images' ? 'n' : f === 'width' || f === 'height' ? 'size' : f);
    let job: Submitted;
    try {
      // The model's own defaults (schnell 4 steps, dev 50 steps + guidance 3.5), not the DeepInfra route's.
      job = await ctx.submit(req, model, body, { from, defaults: generators.get(model)!.variant });
    } catch (e) {
      if (e instanceof RequestValidationError) {
        const msg = e.fields.map((f) => `${param(f.field)} (${f.field}): ${f.message}; got ${f.given}; allowed: ${f.allowed}`).join('\n');
        return reply.code(400).send(openaiError('invalid_request_error', msg, param(e.fields[0]!.field)));
      }
      if (e instanceof QueueFullError) return reply.code(429).header('retry-after', String(e.retryAfterS)).send(openaiError('rate_limit_exceeded', e.message));
      if (e instanceof QueueClosedError) return reply.code(503).send(openaiError('server_error', e.message));
      throw e;
    }
    cancelOnDisconnect(ctx, reply, job.id);
    const s = await job.done;
    if (s.status !== 'succeeded') {
      const type = s.error?.type ?? (s.status === 'cancelled' ? 'cancelled' : 'internal_error');
      const status = errorStatus(type);
      // OpenAI's shapes: a job the input made fail is the request's fault (400); a cancelled one 409; else 500.
      const [code, kind] = type === 'cancelled' ? [409, 'cancelled'] : status < 500 ? [400, 'invalid_request_error'] : [500, 'server_error'];
      return reply.code(code).send(openaiError(kind, s.error?.message ?? 'failed', null, type));
    }
    const images = (s.result!.images as string[]).map((u) => ({ b64_json: u.slice(u.indexOf(',') + 1), revised_prompt: job.request.prompt }));
    return reply.send({ created: Math.floor(Date.parse(s.finished_at!) / 1000), data: images });
  }
}
