/**
 * What a job's webhook says, and when: the `start` event (the job began running) and the `completed` event (the
 * DeepInfra response body for a succeeded job; for a failed or cancelled one its status and error). The request's
 * `webhook_events_filter` picks the events (default: `completed` only, as before). Shared by the in-process queue
 * and the Redis worker, so both send the same messages with the same ids.
 */
import type { InferenceRequest } from '@flux-ts/core';
import type { JobStatus } from './job-queue.ts';
import { webhookId, type Delivery, type WebhookEvent } from './webhook.ts';

const ZERO_STATUS = { runtime_ms: 0, cost: 0, tokens_generated: 0, tokens_input: 0 };

/** The events a request asked for (none without a webhook). */
export function wantedEvents(request: Pick<InferenceRequest, 'webhook' | 'webhook_events_filter'>): WebhookEvent[] {
  if (request.webhook === undefined) return [];
  return request.webhook_events_filter ?? ['completed'];
}

/** The body of the `completed` event. */
export function completedPayload(s: JobStatus): Record<string, unknown> {
  if (s.status === 'succeeded' && s.result) return s.result;
  const status = s.status === 'cancelled' ? 'cancelled' : 'failed';
  return {
    request_id: s.request_id,
    inference_status: { status, ...ZERO_STATUS },
    error: s.error ?? { type: status === 'cancelled' ? 'cancelled' : 'internal_error', message: status },
  };
}

/** The delivery of `event` for a job, when its request asked for it. */
export function deliveryFor(request: Pick<InferenceRequest, 'webhook' | 'webhook_events_filter'>, s: JobStatus, event: WebhookEvent): Delivery | undefined {
  if (request.webhook === undefined || !wantedEvents(request).includes(event)) return undefined;
  const body =
    event === 'start'
      ? { request_id: s.request_id, event: 'start', inference_status: { status: 'running', ...ZERO_STATUS }, started_at: s.started_at }
      : completedPayload(s);
  return { id: webhookId(s.request_id, event), request_id: s.request_id, event, url: request.webhook, body: JSON.stringify(body) };
}
