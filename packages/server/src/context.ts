/**
 * What the route modules share: the queue, the models, the limits, and `submit` (validate, check the webhook,
 * enqueue), so the DeepInfra and OpenAI routes admit a job exactly the same way.
 */
import { RequestValidationError, parseInferenceRequest, type DefaultsProfile, type InferenceRequest } from '@flux-ts/core';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from './errors.ts';
import type { Generator } from './generator.ts';
import type { JobQueue, JobStatus } from './job-queue.ts';
import type { ServerMetrics } from './metrics.ts';
import { admitInputImage, type BodyLimits } from './request-body.ts';
import { WebhookTargetError, type WebhookSender } from './webhook.ts';

export interface ServerContext {
  app: FastifyInstance;
  queue: JobQueue;
  /** API model id -> its generator. */
  generators: ReadonlyMap<string, Generator>;
  limits: BodyLimits;
  webhooks: WebhookSender;
  metrics: ServerMetrics;
  log: FastifyBaseLogger;
  authEnabled: boolean;
  logPrompts: boolean;
  resultTtlS: number;
  submit: Submit;
}

export interface Submitted {
  id: string;
  request: InferenceRequest;
  done: Promise<JobStatus>;
}

/** Validates, checks the webhook, enqueues. Throws RequestValidationError / ApiError / QueueFullError / QueueClosedError. */
export type Submit = (req: FastifyRequest, model: string, body: Record<string, unknown>, opts: { from: 'json' | 'form'; defaults?: DefaultsProfile }) => Promise<Submitted>;

/** A client's own X-Request-Id: 1 to 64 letters, digits, "_" or "-" (it names keys in Redis and rows in the journal). */
export const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The request's id: the client's X-Request-Id when valid (else Fastify's UUID), or a 400 when it is not. */
export function requestIdOf(req: FastifyRequest): string {
  const given = req.headers['x-request-id'];
  if (given === undefined) return req.id;
  if (typeof given !== 'string' || !REQUEST_ID.test(given)) {
    throw new ApiError('invalid_request_id', `X-Request-Id must be 1 to 64 letters, digits, "_" or "-" (a UUID fits); got ${JSON.stringify(String(given).slice(0, 80))}. Send another, or none for a server-made id`);
  }
  return given;
}

export function makeSubmit(ctx: Omit<ServerContext, 'submit' | 'app'>): Submit {
  return async (req, model, body, opts) => {
    const request: InferenceRequest = parseInferenceRequest(body, { from: opts.from, defaults: opts.defaults, sizes: ctx.limits.sizes });
    let image: Uint8Array | undefined;
    if (request.image !== undefined) image = admitInputImage(request.image, ctx.limits);
    delete request.image;
    if (request.webhook !== undefined) {
      try {
        await ctx.webhooks.check(request.webhook);
      } catch (e) {
        if (!(e instanceof WebhookTargetError)) throw e;
        throw new RequestValidationError([{ field: 'webhook', given: JSON.stringify(request.webhook), allowed: 'a public http(s) URL', message: e.message }]);
      }
    }
    const id = requestIdOf(req);
    const { done } = await ctx.queue.enqueue(id, { model, request, image });
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
        ...(ctx.logPrompts ? { prompt: request.prompt } : {}),
      },
      'job queued',
    );
    if (!ctx.logPrompts) req.log.debug({ prompt: request.prompt }, 'job prompt');
    return { id, request, done };
  };
}
