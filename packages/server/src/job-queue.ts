/**
 * Jobs: the `JobQueue` interface (enqueue, status, cancel, events, webhooks) and the default in-process
 * implementation.
 *
 * The queue holds plain job data (model id + validated request) and calls ONE worker function per job (job-worker.ts);
 * the Redis queue (redis-queue.ts) keeps the data in BullMQ and runs the same worker in other processes. Both share
 * the job core (job-core.ts: waiters, listeners, terminal events). The in-process queue runs one job at a time per
 * model ("lane") with a bounded FIFO of waiting jobs in front; a full lane refuses with `QueueFullError` (the
 * server answers 429 with Retry-After). It keeps its jobs in a `JobStore`: in memory, or the SQLite journal
 * (journal.ts), from which a restarted server takes up queued jobs, retries (or fails) interrupted ones and delivers
 * the webhooks still owed.
 */
import { FluxError, type InferenceRequest } from '@flux-ts/core';
import { JobTracker, cancelledError, isTerminal, toJobError } from './job-core.ts';
import { MemoryJobStore, type JobStore, type StoredJob } from './job-store.ts';
import { Outbox, type OutboxOptions, type WebhookOutbox } from './outbox.ts';
import { deliveryFor } from './webhook-payloads.ts';
import type { Delivery, WebhookSender } from './webhook.ts';

export type { WebhookOutbox } from './outbox.ts';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobData {
  /** The API model path ("black-forest-labs/FLUX-1-schnell"). */
  model: string;
  request: InferenceRequest;
  /**
   * Image-to-image input: the uploaded PNG/JPEG file bytes, its header already checked (format, declared size).
   * It is decoded only when the job runs, by the generator (off the HTTP thread), so a queued job holds the
   * compressed file, never its pixels.
   */
  image?: Uint8Array;
}

/** What a job produced: the response body that is sent (or posted to the webhook). */
export type JobResult = Record<string, unknown>;

export interface JobError {
  type: string;
  message: string;
}

export interface JobStatus {
  request_id: string;
  model: string;
  status: JobState;
  /** Jobs ahead of this one in its lane (queued only). */
  queue_position?: number;
  /** Denoising steps finished, and of how many (running and after). */
  step?: number;
  total_steps?: number;
  created_at: string;
  started_at?: string;
  finished_at?: string;
  result?: JobResult;
  error?: JobError;
}

export type JobEvent =
  | { type: 'queued'; request_id: string; queue_position: number }
  | { type: 'running'; request_id: string }
  | { type: 'step'; request_id: string; step: number; total_steps: number }
  /** A step preview (requests with `preview_every`): a PNG data URI of the proj estimate, 1/8 of the image's size. */
  | { type: 'preview'; request_id: string; step: number; total_steps: number; image: string }
  | { type: 'succeeded'; request_id: string; result: JobResult }
  | { type: 'failed'; request_id: string; error: JobError }
  | { type: 'cancelled'; request_id: string };

export interface WorkerContext {
  signal: AbortSignal;
  progress(step: number, total: number): void;
  /** A step preview, as a PNG data URI (only for requests that asked for previews). */
  preview?(step: number, total: number, image: string): void;
}

export type Worker = (id: string, data: JobData, ctx: WorkerContext) => Promise<JobResult>;

/** A value, or a promise of it: the in-process queue answers at once, a shared (Redis) queue asynchronously. */
export type MaybePromise<T> = T | Promise<T>;

export interface JobQueue {
  /** Adds a job; throws (or rejects with) `QueueFullError` when the model's lane is full. `done`: the job's final status. */
  enqueue(id: string, data: JobData): MaybePromise<{ done: Promise<JobStatus> }>;
  get(id: string): MaybePromise<JobStatus | undefined>;
  /** Cancels a queued or running job (a running one stops between steps). False when unknown or already finished. */
  cancel(id: string, reason?: string): MaybePromise<boolean>;
  /** Listens to one job's events; returns the unsubscribe function. */
  subscribe(id: string, listener: (e: JobEvent) => void): () => void;
  /** Waiting jobs (not running), per model or in all. */
  depth(model?: string): MaybePromise<number>;
  running(model?: string): MaybePromise<number>;
  /** Stops accepting; cancels waiting and running jobs when `cancel`, else lets them finish. Resolves when idle. */
  close(opts?: { cancel?: boolean }): Promise<void>;
  /**
   * Starts delivering the webhooks the queue's jobs owe (the queue records them with the job's state changes, so
   * none is lost): through `sender`, retried on `opts.schedule`.
   */
  startWebhooks(sender: WebhookSender, opts: OutboxOptions): WebhookOutbox;
  /** Lets go of the store (the journal, the Redis connections): after `close` and the webhooks' flush. */
  closeStore(): void | Promise<void>;
}

export class DuplicateJobError extends FluxError {
  constructor(id: string) {
    super('duplicate_request_id', `a job with id ${id} already exists; send another X-Request-Id (or none)`);
    this.name = 'DuplicateJobError';
  }
}

export class QueueFullError extends FluxError {
  readonly retryAfterS: number;
  constructor(model: string, limit: number, retryAfterS: number) {
    super('queue_full', `the queue for ${model} is full (${limit} waiting); retry in about ${retryAfterS} s`);
    this.name = 'QueueFullError';
    this.retryAfterS = retryAfterS;
  }
}

export class QueueClosedError extends FluxError {
  constructor() {
    super('shutting_down', 'the server is shutting down and accepts no new jobs; retry on another instance or later');
    this.name = 'QueueClosedError';
  }
}

interface Job {
  id: string;
  data: JobData;
  status: JobStatus;
  controller: AbortController;
}

interface Lane {
  waiting: Job[];
  running: Job | null;
  /** Recent runtimes (ms) for the Retry-After estimate. */
  recentMs: number[];
}

export interface InProcessQueueOptions {
  worker: Worker;
  /** Waiting jobs per model before 429 (default 16). */
  maxQueued?: number;
  /** Where jobs and owed webhooks are kept (default: in memory; `SqliteJobStore` for the journal). */
  store?: JobStore;
  /** Finished jobs kept for status look-ups without a store given (default 1000, oldest dropped first). */
  keepFinished?: number;
  /** Bytes of finished jobs' results kept without a store given (default 256 MiB, oldest dropped first). */
  keepFinishedBytes?: number;
  /** How long a finished job's status and result stay available, in seconds (default 3600). */
  resultTtlS?: number;
  /** Times a job is started in all; a job interrupted (a crash) that often fails with `interrupted` (default 2). */
  maxAttempts?: number;
  /** Called on every state change (metrics, logs). */
  onChange?: (job: JobStatus, previous: JobState | undefined) => void;
}

export class InProcessJobQueue implements JobQueue {
  private readonly worker: Worker;
  private readonly maxQueued: number;
  private readonly resultTtlMs: number;
  private readonly maxAttempts: number;
  readonly store: JobStore;
  private readonly tracker: JobTracker;
  /** Queued and running jobs. */
  private readonly jobs = new Map<string, Job>();
  private readonly lanes = new Map<string, Lane>();
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private outbox?: WebhookOutbox;
  private readonly pruner: NodeJS.Timeout;

  constructor(opts: InProcessQueueOptions) {
    this.worker = opts.worker;
    this.maxQueued = opts.maxQueued ?? 16;
    this.resultTtlMs = (opts.resultTtlS ?? 3600) * 1000;
    this.maxAttempts = opts.maxAttempts ?? 2;
    this.store = opts.store ?? new MemoryJobStore({ keepFinished: opts.keepFinished, keepFinishedBytes: opts.keepFinishedBytes });
    this.tracker = new JobTracker(opts.onChange);
    this.pruner = setInterval(() => this.store.prune(Date.now()), Math.min(60_000, Math.max(1000, this.resultTtlMs / 4)));
    this.pruner.unref();
    this.recover();
  }

  /** Jobs a previous process left (the journal): queued ones wait again, interrupted ones are retried or failed. */
  private recover(): void {
    for (const stored of this.store.unfinished()) {
      const job = this.adopt(stored);
      if (stored.state === 'running') {
        if (stored.attempts >= this.maxAttempts) {
          this.jobs.delete(job.id);
          const n = stored.attempts;
          this.settle(job, 'failed', {
            error: {
              type: 'interrupted',
              message: `the server stopped (crash or kill) while this job ran, ${n} time${n === 1 ? '' : 's'}; it is not retried again. Resubmit it, and check the server's log and memory`,
            },
          }, 'running');
          continue;
        }
        this.store.requeue(job.id);
      }
      this.lane(job.data.model).waiting.push(job);
    }
    for (const model of this.lanes.keys()) queueMicrotask(() => this.pump(model));
  }

  private adopt(stored: StoredJob): Job {
    const job: Job = {
      id: stored.id,
      data: stored.data,
      status: { request_id: stored.id, model: stored.data.model, status: 'queued', created_at: stored.created_at },
      controller: new AbortController(),
    };
    this.jobs.set(job.id, job);
    return job;
  }

  private lane(model: string): Lane {
    let l = this.lanes.get(model);
    if (!l) this.lanes.set(model, (l = { waiting: [], running: null, recentMs: [] }));
    return l;
  }

  enqueue(id: string, data: JobData): { done: Promise<JobStatus> } {
    if (this.closed) throw new QueueClosedError();
    if (this.jobs.has(id) || this.store.has(id)) throw new DuplicateJobError(id);
    const lane = this.lane(data.model);
    if (lane.waiting.length >= this.maxQueued) {
      const avg = lane.recentMs.length ? lane.recentMs.reduce((a, b) => a + b, 0) / lane.recentMs.length : 1000;
      throw new QueueFullError(data.model, this.maxQueued, Math.max(1, Math.ceil((avg * (lane.waiting.length + 1)) / 1000)));
    }
    const created_at = new Date().toISOString();
    this.store.insert({ id, data, state: 'queued', attempts: 0, created_at }); // written before the client hears "accepted"
    const job = this.adopt({ id, data, state: 'queued', attempts: 0, created_at });
    const done = this.tracker.done(id);
    lane.waiting.push(job);
    this.tracker.transition(job.status, undefined, lane.waiting.length - 1 + (lane.running ? 1 : 0));
    queueMicrotask(() => this.pump(data.model));
    return { done };
  }

  get(id: string): JobStatus | undefined {
    const job = this.jobs.get(id);
    if (!job) {
      const f = this.store.finished(id);
      return f ? { ...f } : undefined;
    }
    const s = { ...job.status };
    if (s.status === 'queued') {
      const lane = this.lane(job.data.model);
      s.queue_position = lane.waiting.indexOf(job) + (lane.running ? 1 : 0);
    }
    return s;
  }

  cancel(id: string, reason = 'cancelled by the client'): boolean {
    const job = this.jobs.get(id);
    if (!job) return false;
    if (job.status.status === 'queued') {
      const lane = this.lane(job.data.model);
      lane.waiting.splice(lane.waiting.indexOf(job), 1);
      this.jobs.delete(id);
      this.settle(job, 'cancelled', { error: { type: 'cancelled', message: reason } }, 'queued');
      this.idleCheck();
      return true;
    }
    job.controller.abort(new FluxError('aborted', reason));
    return true;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    if (!this.jobs.has(id)) return () => {};
    return this.tracker.subscribe(id, listener);
  }

  depth(model?: string): number {
    if (model !== undefined) return this.lanes.get(model)?.waiting.length ?? 0;
    let n = 0;
    for (const l of this.lanes.values()) n += l.waiting.length;
    return n;
  }

  running(model?: string): number {
    if (model !== undefined) return this.lanes.get(model)?.running ? 1 : 0;
    let n = 0;
    for (const l of this.lanes.values()) n += l.running ? 1 : 0;
    return n;
  }

  startWebhooks(sender: WebhookSender, opts: OutboxOptions): WebhookOutbox {
    this.outbox = new Outbox(this.store, sender, opts, () => {
      let n = 0;
      for (const j of this.jobs.values()) if (j.data.request.webhook !== undefined && !isTerminal(j.status.status)) n++;
      return n;
    });
    return this.outbox;
  }

  async close(opts: { cancel?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.cancel) {
      for (const lane of this.lanes.values()) {
        for (const job of [...lane.waiting]) this.cancel(job.id, 'cancelled: the server is shutting down');
        if (lane.running) this.cancel(lane.running.id, 'cancelled: the server is shutting down');
      }
    }
    if (this.depth() + this.running() > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    clearInterval(this.pruner);
  }

  /** Closes the store (after `close` and the webhooks' flush). */
  closeStore(): void {
    this.store.close();
  }

  private idleCheck(): void {
    if (this.depth() + this.running() === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** The terminal change: recorded with the webhook it owes (one store call), then announced. */
  private settle(job: Job, state: 'succeeded' | 'failed' | 'cancelled', extra: { result?: JobResult; error?: JobError }, previous: JobState): void {
    job.status = { ...job.status, status: state, finished_at: new Date().toISOString(), ...extra };
    delete job.status.queue_position;
    delete job.data.image; // free the input file
    const hook = deliveryFor(job.data.request, job.status, 'completed');
    this.store.finish(job.status, hook ? [hook] : [], Date.now() + this.resultTtlMs);
    this.tracker.finish(job.status, previous);
    this.outbox?.kick(); // also wakes a flush waiting for this job's webhook
  }

  private pump(model: string): void {
    const lane = this.lane(model);
    if (lane.running) return;
    const job = lane.waiting.shift();
    if (!job) return this.idleCheck();
    lane.running = job;
    job.status = { ...job.status, status: 'running', started_at: new Date().toISOString() };
    const start: Delivery | undefined = deliveryFor(job.data.request, job.status, 'start');
    this.store.started(job.id, job.status.started_at!, start ? [start] : []);
    this.tracker.transition(job.status, 'queued');
    if (start) this.outbox?.kick();
    const t0 = performance.now();
    const ctx: WorkerContext = {
      signal: job.controller.signal,
      progress: (step, total) => {
        job.status = { ...job.status, step, total_steps: total };
        this.tracker.step(job.id, step, total);
      },
      preview: (step, total, image) => this.tracker.preview(job.id, step, total, image),
    };
    Promise.resolve()
      .then(() => this.worker(job.id, job.data, ctx))
      .then(
        (result) => this.settle(job, 'succeeded', { result }, 'running'),
        (err: unknown) => {
          if (job.controller.signal.aborted) this.settle(job, 'cancelled', { error: cancelledError(job.controller.signal.reason) }, 'running');
          else this.settle(job, 'failed', { error: toJobError(err) }, 'running');
        },
      )
      .finally(() => {
        this.jobs.delete(job.id);
        lane.recentMs.push(performance.now() - t0);
        if (lane.recentMs.length > 8) lane.recentMs.shift();
        lane.running = null;
        this.pump(model);
      });
  }
}

export { toJobError } from './job-core.ts';
