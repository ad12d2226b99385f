/**
 * Jobs: the `JobQueue` interface (enqueue, status, cancel, events) and the default in-process implementation.
 *
 * The queue holds plain job data (model id + validated request) and calls ONE worker function per job, so a later
 * implementation can keep the data in Redis/BullMQ and run the same worker in another process. The in-process
 * queue runs one job at a time per model ("lane") with a bounded FIFO of waiting jobs in front; a full lane
 * refuses with `QueueFullError` (the server answers 429 with Retry-After).
 */
import { FluxError, type InferenceRequest } from '@flux-ts/core';

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
  | { type: 'succeeded'; request_id: string; result: JobResult }
  | { type: 'failed'; request_id: string; error: JobError }
  | { type: 'cancelled'; request_id: string };

export interface WorkerContext {
  signal: AbortSignal;
  progress(step: number, total: number): void;
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
   * Shared queues only: webhook jobs whose server went away (a restart) finish on another server, which delivers
   * their webhook through `deliver` (the queue makes sure exactly one server does).
   */
  adoptWebhooks?(deliver: (status: JobStatus, url: string) => Promise<void>): void;
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
  listeners: Set<(e: JobEvent) => void>;
  resolve: (s: JobStatus) => void;
  done: Promise<JobStatus>;
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
  /** Finished jobs kept for status look-ups (default 1000, oldest dropped first). */
  keepFinished?: number;
  /** Bytes of finished jobs' results (PNG data URIs) kept for look-ups (default 256 MiB, oldest dropped first). */
  keepFinishedBytes?: number;
  /** Called on every state change (metrics, logs). */
  onChange?: (job: JobStatus, previous: JobState | undefined) => void;
}

export class InProcessJobQueue implements JobQueue {
  private readonly worker: Worker;
  private readonly maxQueued: number;
  private readonly keepFinished: number;
  private readonly keepFinishedBytes: number;
  private readonly onChange?: InProcessQueueOptions['onChange'];
  private readonly jobs = new Map<string, Job>();
  /** Finished job ids, oldest first, with the size of each one's result. */
  private readonly finished: { id: string; bytes: number }[] = [];
  private finishedBytes = 0;
  private readonly lanes = new Map<string, Lane>();
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: InProcessQueueOptions) {
    this.worker = opts.worker;
    this.maxQueued = opts.maxQueued ?? 16;
    this.keepFinished = opts.keepFinished ?? 1000;
    this.keepFinishedBytes = opts.keepFinishedBytes ?? 256 * 1024 * 1024;
    this.onChange = opts.onChange;
  }

  private lane(model: string): Lane {
    let l = this.lanes.get(model);
    if (!l) this.lanes.set(model, (l = { waiting: [], running: null, recentMs: [] }));
    return l;
  }

  enqueue(id: string, data: JobData): { done: Promise<JobStatus> } {
    if (this.closed) throw new QueueClosedError();
    if (this.jobs.has(id)) throw new FluxError('duplicate_job', `a job with id ${id} exists`);
    const lane = this.lane(data.model);
    if (lane.waiting.length >= this.maxQueued) {
      const avg = lane.recentMs.length ? lane.recentMs.reduce((a, b) => a + b, 0) / lane.recentMs.length : 1000;
      throw new QueueFullError(data.model, this.maxQueued, Math.max(1, Math.ceil((avg * (lane.waiting.length + 1)) / 1000)));
    }
    let resolve!: (s: JobStatus) => void;
    const done = new Promise<JobStatus>((r) => (resolve = r));
    const job: Job = {
      id,
      data,
      status: { request_id: id, model: data.model, status: 'queued', created_at: new Date().toISOString() },
      controller: new AbortController(),
      listeners: new Set(),
      resolve,
      done,
    };
    this.jobs.set(id, job);
    lane.waiting.push(job);
    this.onChange?.(job.status, undefined);
    this.emit(job, { type: 'queued', request_id: id, queue_position: lane.waiting.length - 1 + (lane.running ? 1 : 0) });
    queueMicrotask(() => this.pump(data.model));
    return { done };
  }

  get(id: string): JobStatus | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
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
      this.finish(job, 'cancelled', { error: { type: 'cancelled', message: reason } });
      return true;
    }
    if (job.status.status === 'running') {
      job.controller.abort(new FluxError('aborted', reason));
      return true;
    }
    return false;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    const job = this.jobs.get(id);
    if (!job) return () => {};
    job.listeners.add(listener);
    return () => job.listeners.delete(listener);
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

  async close(opts: { cancel?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.cancel) {
      for (const lane of this.lanes.values()) {
        for (const job of [...lane.waiting]) this.cancel(job.id, 'cancelled: the server is shutting down');
        if (lane.running) this.cancel(lane.running.id, 'cancelled: the server is shutting down');
      }
    }
    if (this.depth() + this.running() === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private emit(job: Job, e: JobEvent): void {
    for (const l of [...job.listeners]) {
      try {
        l(e);
      } catch {
        // a listener's failure (a closed socket) must not stop the job
      }
    }
  }

  private finish(job: Job, state: 'succeeded' | 'failed' | 'cancelled', extra: { result?: JobResult; error?: JobError }): void {
    const previous = job.status.status;
    job.status = { ...job.status, status: state, finished_at: new Date().toISOString(), ...extra };
    delete job.status.queue_position;
    delete job.data.image; // free the decoded input
    this.onChange?.(job.status, previous);
    if (state === 'succeeded') this.emit(job, { type: 'succeeded', request_id: job.id, result: extra.result! });
    else if (state === 'failed') this.emit(job, { type: 'failed', request_id: job.id, error: extra.error! });
    else this.emit(job, { type: 'cancelled', request_id: job.id });
    job.listeners.clear();
    job.resolve({ ...job.status });
    const bytes = extra.result ? resultBytes(extra.result) : 0;
    this.finished.push({ id: job.id, bytes });
    this.finishedBytes += bytes;
    while (this.finished.length > this.keepFinished || (this.finishedBytes > this.keepFinishedBytes && this.finished.length > 0)) {
      const old = this.finished.shift()!;
      this.finishedBytes -= old.bytes;
      this.jobs.delete(old.id);
    }
  }

  private pump(model: string): void {
    const lane = this.lane(model);
    if (lane.running) return;
    const job = lane.waiting.shift();
    if (!job) {
      if (this.depth() + this.running() === 0) for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    lane.running = job;
    job.status = { ...job.status, status: 'running', started_at: new Date().toISOString() };
    this.onChange?.(job.status, 'queued');
    this.emit(job, { type: 'running', request_id: job.id });
    const t0 = performance.now();
    const ctx: WorkerContext = {
      signal: job.controller.signal,
      progress: (step, total) => {
        job.status = { ...job.status, step, total_steps: total };
        this.emit(job, { type: 'step', request_id: job.id, step, total_steps: total });
      },
    };
    Promise.resolve()
      .then(() => this.worker(job.id, job.data, ctx))
      .then(
        (result) => this.finish(job, 'succeeded', { result }),
        (err: unknown) => {
          if (job.controller.signal.aborted) {
            const reason = job.controller.signal.reason;
            this.finish(job, 'cancelled', { error: { type: 'cancelled', message: reason instanceof Error ? reason.message : 'cancelled' } });
          } else {
            this.finish(job, 'failed', { error: toJobError(err) });
          }
        },
      )
      .finally(() => {
        lane.recentMs.push(performance.now() - t0);
        if (lane.recentMs.length > 8) lane.recentMs.shift();
        lane.running = null;
        this.pump(model);
      });
  }
}

/** The size of a result as kept in memory: its image strings (data URIs) dominate. */
function resultBytes(result: JobResult): number {
  const images = result.images;
  return Array.isArray(images) ? images.reduce((n: number, i) => n + (typeof i === 'string' ? i.length : 0), 0) : 0;
}

/** A job failure as the API reports it: user errors keep their message, anything else is generic. */
export function toJobError(err: unknown): JobError {
  if (err instanceof FluxError) return { type: err.code, message: err.message };
  return { type: 'internal_error', message: 'the generation failed with an internal error (see the server log)' };
}
