/**
 * A shared job queue on Redis (BullMQ): `flux serve --redis URL` enqueues here, any number of `flux worker --redis URL`
 * processes (on any machines) generate. Same `JobQueue` contract as the in-process queue:
 *
 * - jobs are BullMQ jobs named by the request id in the queue `<prefix>` (default "flux");
 * - progress: the worker's `job.updateProgress({step, total})`, seen here through `QueueEvents`;
 * - cancel: a queued job is removed; a running one gets a Redis key `<prefix>:cancel:<id>` plus a pub/sub message on
 *   `<prefix>:cancel`, which the worker turns into its AbortSignal (checked between steps);
 * - results (PNG data URIs) are not the BullMQ return value: the worker stores them under `<prefix>:result:<id>` with a
 *   TTL, and the server that owns the request reads them and deletes the key once it has them;
 * - a worker that dies mid-job (SIGKILL, crash, lost machine) stops renewing its lock; another worker's stalled-job
 *   check puts the job back in the queue, up to `maxStalledCount` times, then it fails with `worker_lost`;
 * - generation errors are not retried (they would fail again): the worker throws BullMQ's `UnrecoverableError`.
 */
import { FluxError } from '@flux-ts/core';
import { Queue, QueueEvents, type Job as BullJob } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import {
  QueueClosedError,
  QueueFullError,
  type JobData,
  type JobError,
  type JobEvent,
  type JobQueue,
  type JobResult,
  type JobState,
  type JobStatus,
} from './job-queue.ts';

/** Job data as stored in Redis (JSON): the input image file (PNG/JPEG, header checked, not decoded) as base64. */
export interface StoredJobData {
  model: string;
  request: JobData['request'];
  image?: { b64: string };
}

/** What the worker returns to BullMQ (the result itself lives under the result key). */
export interface StoredReturn {
  stored: true;
  runtime_ms: number;
  worker: string;
}

export const DEFAULT_PREFIX = 'flux';

export function redisKeys(prefix: string) {
  return {
    queue: prefix,
    cancelChannel: `${prefix}:cancel`,
    cancel: (id: string) => `${prefix}:cancel:${id}`,
    result: (id: string) => `${prefix}:result:${id}`,
    /** Who delivers a job's webhook: its server while alive; released at shutdown for another server to claim. */
    hook: (id: string) => `${prefix}:hook:${id}`,
  };
}

export function toStoredData(d: JobData): StoredJobData {
  return {
    model: d.model,
    request: d.request,
    ...(d.image ? { image: { b64: Buffer.from(d.image.buffer, d.image.byteOffset, d.image.byteLength).toString('base64') } } : {}),
  };
}

export function fromStoredData(d: StoredJobData): JobData {
  return { model: d.model, request: d.request, ...(d.image ? { image: new Uint8Array(Buffer.from(d.image.b64, 'base64')) } : {}) };
}

/** A failure as the worker reports it to BullMQ: the JobError as JSON in the failed reason. */
export function encodeJobError(e: JobError): string {
  return JSON.stringify({ flux: e });
}

/** The failed reason -> a JobError; BullMQ's own reasons (stalled too often, lock lost) get a clear message. */
export function decodeFailedReason(reason: string | undefined, maxStalledCount: number): JobError {
  if (reason) {
    try {
      const parsed = JSON.parse(reason) as { flux?: JobError };
      if (parsed.flux && typeof parsed.flux.type === 'string') return parsed.flux;
    } catch {
      // not ours
    }
    if (/stalled more than allowable limit/i.test(reason)) {
      return {
        type: 'worker_lost',
        message: `the job's worker stopped (killed, crashed or lost its Redis connection) ${maxStalledCount + 1} time(s); giving up after ${maxStalledCount + 1} attempt(s). Check the workers' logs and resubmit`,
      };
    }
  }
  return { type: 'internal_error', message: `the job failed on a worker: ${reason ?? 'unknown reason'}` };
}

export interface RedisQueueOptions {
  /** redis://[user:pass@]host:port[/db] */
  url: string;
  /** Queue name and key prefix (default "flux"): servers and workers of one deployment share it. */
  prefix?: string;
  /** Waiting + running jobs on the shared queue before 429 (default 16). */
  maxQueued?: number;
  /** How long a result waits in Redis for its server (default 3600 s). Must match the workers' --result-ttl. */
  resultTtlS?: number;
  /** Times a job may lose its worker before it fails (default 1; BullMQ's maxStalledCount, set on the workers). */
  maxStalledCount?: number;
  /** Finished jobs kept in Redis for status look-ups (default 1 h, 1000 jobs). */
  keepFinishedS?: number;
  /** On close without cancel: wait this long for this server's jobs, then leave them to the queue (default 30 s). */
  drainMs?: number;
  /** Safety net for missed events (reconnects): poll own unfinished jobs every this often (default 2000 ms). */
  pollMs?: number;
  onChange?: (job: JobStatus, previous: JobState | undefined) => void;
}

interface Owned {
  id: string;
  model: string;
  resolve: (s: JobStatus) => void;
  done: Promise<JobStatus>;
  last: JobState;
  finishing: boolean;
  webhook?: string;
}

export class RedisJobQueue implements JobQueue {
  readonly queue: Queue;
  readonly events: QueueEvents;
  readonly redis: Redis;
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly maxQueued: number;
  private readonly resultTtlS: number;
  private readonly maxStalledCount: number;
  private readonly keepFinishedS: number;
  private readonly drainMs: number;
  /** State-change callback (metrics, logs); `createServer`'s queueFactory passes its own. */
  onChange?: RedisQueueOptions['onChange'];
  private readonly owned = new Map<string, Owned>();
  private readonly listeners = new Map<string, Set<(e: JobEvent) => void>>();
  /** Results this server already took out of Redis (bounded), for status look-ups after delivery. */
  private readonly delivered = new Map<string, JobStatus>();
  private readonly poller: NodeJS.Timeout;
  private closed = false;
  private adopt?: (status: JobStatus, url: string) => Promise<void>;
  private readonly serverId = `${process.pid}-${Math.random().toString(36).slice(2)}`;

  private constructor(opts: RedisQueueOptions, queue: Queue, events: QueueEvents, redis: Redis) {
    this.queue = queue;
    this.events = events;
    this.redis = redis;
    this.keys = redisKeys(opts.prefix ?? DEFAULT_PREFIX);
    this.maxQueued = opts.maxQueued ?? 16;
    this.resultTtlS = opts.resultTtlS ?? 3600;
    this.maxStalledCount = opts.maxStalledCount ?? 1;
    this.keepFinishedS = opts.keepFinishedS ?? 3600;
    this.drainMs = opts.drainMs ?? 30_000;
    this.onChange = opts.onChange;
    events.on('active', ({ jobId }) => this.onActive(jobId));
    events.on('waiting', ({ jobId }) => this.onWaiting(jobId));
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data));
    events.on('completed', ({ jobId }) => void this.settle(jobId).then(() => this.adoptIfOrphan(jobId)));
    events.on('failed', ({ jobId }) => void this.settle(jobId).then(() => this.adoptIfOrphan(jobId)));
    events.on('removed', ({ jobId }) => void this.settle(jobId));
    events.on('error', () => {}); // reconnects are ioredis's job; the poller covers missed events
    this.poller = setInterval(() => {
      for (const id of this.owned.keys()) void this.settle(id);
    }, opts.pollMs ?? 2000);
    this.poller.unref();
  }

  /** Connects (fails with a clear error when Redis is unreachable) and listens to the queue's events. */
  static async connect(opts: RedisQueueOptions): Promise<RedisJobQueue> {
    const name = redisKeys(opts.prefix ?? DEFAULT_PREFIX).queue;
    const redis = await connectRedis(opts.url);
    // BullMQ makes (and closes) its own connections from these options; ours (`redis`) is for results and cancels.
    const connection = redisOptions(opts.url);
    const queue = new Queue(name, { connection });
    const events = new QueueEvents(name, { connection });
    queue.on('error', () => {}); // ioredis reconnects; requests fail meanwhile and say so
    events.on('error', () => {});
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return new RedisJobQueue(opts, queue, events, redis);
  }

  async enqueue(id: string, data: JobData): Promise<{ done: Promise<JobStatus> }> {
    if (this.closed) throw new QueueClosedError();
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused', 'active');
    const busy = Object.values(counts).reduce((a, b) => a + b, 0);
    if (busy >= this.maxQueued) throw new QueueFullError(data.model, this.maxQueued, Math.max(1, Math.ceil(busy / Math.max(1, counts.active ?? 1))));
    if (await this.queue.getJob(id)) throw new FluxError('duplicate_job', `a job with id ${id} exists`);
    let resolve!: (s: JobStatus) => void;
    const done = new Promise<JobStatus>((r) => (resolve = r));
    const own: Owned = { id, model: data.model, resolve, done, last: 'queued', finishing: false, webhook: data.request.webhook };
    this.owned.set(id, own);
    if (own.webhook !== undefined) await this.redis.set(this.keys.hook(id), this.serverId, 'EX', this.keepFinishedS);
    await this.queue.add(id, toStoredData(data), {
      jobId: id,
      attempts: 1,
      removeOnComplete: { age: this.keepFinishedS, count: 1000 },
      removeOnFail: { age: this.keepFinishedS, count: 1000 },
    });
    const status: JobStatus = { request_id: id, model: data.model, status: 'queued', created_at: new Date().toISOString() };
    this.onChange?.(status, undefined);
    this.emit(id, { type: 'queued', request_id: id, queue_position: Math.max(0, busy) });
    return { done };
  }

  async get(id: string): Promise<JobStatus | undefined> {
    const job = await this.queue.getJob(id);
    if (!job) {
      const kept = this.delivered.get(id);
      if (kept) return { ...kept };
      const reason = await this.redis.get(this.keys.cancel(id));
      if (reason !== null) return { request_id: id, model: 'unknown', status: 'cancelled', created_at: new Date(0).toISOString(), error: { type: 'cancelled', message: reason } };
      return undefined;
    }
    return this.statusOf(job, true);
  }

  async cancel(id: string, reason = 'cancelled by the client'): Promise<boolean> {
    const job = await this.queue.getJob(id);
    if (!job) return false;
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return false;
    await this.redis.set(this.keys.cancel(id), reason, 'EX', this.resultTtlS);
    if (state !== 'active') {
      try {
        await job.remove();
        await this.settle(id);
        return true;
      } catch {
        // taken by a worker meanwhile: cancel it as a running job
      }
    }
    await this.redis.publish(this.keys.cancelChannel, JSON.stringify({ id, reason }));
    return true;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set!.delete(listener);
      if (set!.size === 0) this.listeners.delete(id);
    };
  }

  async depth(_model?: string): Promise<number> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused');
    return Object.values(c).reduce((a, b) => a + b, 0);
  }

  async running(_model?: string): Promise<number> {
    return (await this.queue.getJobCounts('active')).active ?? 0;
  }

  async close(opts: { cancel?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.cancel) for (const id of [...this.owned.keys()]) await this.cancel(id, 'cancelled: the server is shutting down').catch(() => false);
    const deadline = Date.now() + (opts.cancel ? Math.max(this.drainMs, 10_000) : this.drainMs);
    while (this.owned.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      for (const id of [...this.owned.keys()]) await this.settle(id).catch(() => {});
    }
    // Jobs still unfinished stay on the shared queue (another server shows their status, delivers their webhook);
    // answer their waiters now.
    for (const own of this.owned.values()) {
      if (own.webhook !== undefined) await this.redis.del(this.keys.hook(own.id)).catch(() => 0);
      own.resolve({ request_id: own.id, model: own.model, status: own.last, created_at: new Date().toISOString() });
    }
    this.owned.clear();
    clearInterval(this.poller);
    // Bounded: with Redis down, BullMQ's close would wait for a reconnect forever.
    await withTimeout(Promise.all([this.events.close(), this.queue.close()]), 5000);
    this.redis.disconnect();
  }

  adoptWebhooks(deliver: (status: JobStatus, url: string) => Promise<void>): void {
    this.adopt = deliver;
  }

  /** A finished webhook job that no live server owns (its server restarted): claim it and deliver its webhook. */
  private async adoptIfOrphan(id: string): Promise<void> {
    if (!this.adopt || this.owned.has(id) || this.closed) return;
    try {
      const job = await this.queue.getJob(id);
      const url = (job?.data as StoredJobData | undefined)?.request.webhook;
      if (!job || url === undefined) return;
      const claimed = await this.redis.set(this.keys.hook(id), this.serverId, 'EX', this.keepFinishedS, 'NX');
      if (claimed !== 'OK') return; // its own server (or another one) delivers it
      const status = await this.statusOf(job, false);
      if (status.status === 'queued' || status.status === 'running') return;
      if (status.status === 'succeeded') this.keep(status);
      await this.adopt(status, url);
      if (status.status === 'succeeded') await this.redis.del(this.keys.result(id)); // delivered
    } catch {
      // Redis gone or the job removed meanwhile: nothing to deliver
    }
  }

  // ---- internals -------------------------------------------------------------------------------------------------------

  private keep(status: JobStatus): void {
    this.delivered.set(status.request_id, status);
    while (this.delivered.size > 200) this.delivered.delete(this.delivered.keys().next().value!);
  }

  private emit(id: string, e: JobEvent): void {
    const set = this.listeners.get(id);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(e);
      } catch {
        // a closed socket must not stop the others
      }
    }
  }

  private onActive(id: string): void {
    const own = this.owned.get(id);
    if (own && own.last !== 'running') {
      const prev = own.last;
      own.last = 'running';
      this.onChange?.({ request_id: id, model: own.model, status: 'running', created_at: new Date().toISOString() }, prev);
    }
    this.emit(id, { type: 'running', request_id: id });
  }

  private onWaiting(id: string): void {
    // a stalled job put back in the queue (its worker died): queued again until another worker takes it
    const own = this.owned.get(id);
    if (own && own.last === 'running') own.last = 'queued';
    if (this.listeners.has(id)) this.emit(id, { type: 'queued', request_id: id, queue_position: 0 });
  }

  private onProgress(id: string, data: unknown): void {
    const p = data as { step?: number; total?: number };
    if (typeof p?.step === 'number' && typeof p.total === 'number') this.emit(id, { type: 'step', request_id: id, step: p.step, total_steps: p.total });
  }

  /** When a job has finished (or vanished): resolve its owner's `done`, tell listeners. Idempotent. */
  private async settle(id: string): Promise<void> {
    const own = this.owned.get(id);
    if (!own && !this.listeners.has(id)) return;
    if (own?.finishing) return;
    if (own) own.finishing = true;
    try {
      const job = await this.queue.getJob(id);
      let status: JobStatus | undefined;
      if (job) {
        status = await this.statusOf(job, false);
        if (status.status === 'queued' || status.status === 'running') return;
      } else {
        const reason = await this.redis.get(this.keys.cancel(id));
        const kept = this.delivered.get(id);
        if (kept) status = kept;
        else if (reason !== null) {
          status = { request_id: id, model: own?.model ?? 'unknown', status: 'cancelled', created_at: new Date().toISOString(), finished_at: new Date().toISOString(), error: { type: 'cancelled', message: reason } };
        } else return; // not added yet, or long gone
      }
      if (own) {
        this.owned.delete(id);
        this.keep(status); // status look-ups here keep working after the Redis copies are gone
        if (status.status === 'succeeded') await this.redis.del(this.keys.result(id)); // delivered: Redis need not keep the PNGs
        this.onChange?.(status, own.last);
        own.resolve({ ...status });
      }
      if (status.status === 'succeeded') this.emit(id, { type: 'succeeded', request_id: id, result: status.result! });
      else if (status.status === 'failed') this.emit(id, { type: 'failed', request_id: id, error: status.error! });
      else this.emit(id, { type: 'cancelled', request_id: id });
      this.listeners.delete(id);
    } finally {
      if (own) own.finishing = false;
    }
  }

  private async statusOf(job: BullJob, withPosition: boolean): Promise<JobStatus> {
    const id = job.id!;
    const data = job.data as StoredJobData;
    const state = await job.getState();
    const base: JobStatus = { request_id: id, model: data.model, status: 'queued', created_at: new Date(job.timestamp).toISOString() };
    if (job.processedOn) base.started_at = new Date(job.processedOn).toISOString();
    const p = job.progress as { step?: number; total?: number } | number;
    if (typeof p === 'object' && p && typeof p.step === 'number') {
      base.step = p.step;
      base.total_steps = p.total;
    }
    if (state === 'active') return { ...base, status: 'running' };
    if (state === 'completed') {
      const raw = await this.redis.get(this.keys.result(id));
      const kept = this.delivered.get(id);
      const result = raw !== null ? (JSON.parse(raw) as JobResult) : kept?.result;
      const finished = { ...base, finished_at: new Date(job.finishedOn ?? Date.now()).toISOString() };
      if (!result) return { ...finished, status: 'succeeded', error: { type: 'result_expired', message: 'the job succeeded but its result is no longer stored (already delivered, or past its TTL)' } };
      return { ...finished, status: 'succeeded', result };
    }
    if (state === 'failed') {
      const error = decodeFailedReason(job.failedReason, this.maxStalledCount);
      return { ...base, status: error.type === 'cancelled' ? 'cancelled' : 'failed', finished_at: new Date(job.finishedOn ?? Date.now()).toISOString(), error };
    }
    if (withPosition) {
      const waiting = await this.queue.getWaiting(0, 999);
      const idx = waiting.findIndex((j) => j.id === id);
      // getWaiting lists the oldest first: position = jobs added before this one + running jobs
      const ahead = idx < 0 ? 0 : idx;
      base.queue_position = ahead + (await this.running());
    }
    return base;
  }
}

/** ioredis options from a redis:// URL, for BullMQ to make its own connections with. */
export function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  const db = Number(u.pathname.slice(1) || 0);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 6379),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(Number.isInteger(db) && db > 0 ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
    retryStrategy: (n: number) => Math.min(n * 200, 2000),
  };
}

export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p.catch(() => undefined), t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to Redis, failing fast with a FluxError that says what to check. */
export async function connectRedis(url: string): Promise<Redis> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FluxError('INVALID_ARGUMENT', `--redis must be a URL like redis://127.0.0.1:6379, got ${url}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new FluxError('INVALID_ARGUMENT', `--redis must start with redis:// or rediss://, got ${url}`);
  const redis = new Redis({ ...redisOptions(url), lazyConnect: true });
  redis.on('error', () => {}); // reported below on connect, then ioredis reconnects
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw new FluxError('redis_unreachable', `cannot reach Redis at ${parsed.host}: ${(e as Error).message}; is redis-server running, and is the URL right?`);
  }
  return redis;
}
