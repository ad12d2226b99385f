/**
 * A shared job queue on Redis (BullMQ): `flux serve --redis URL` enqueues here, any number of `flux worker --redis URL`
 * processes (on any machines) generate. Same `JobQueue` contract as the in-process queue, and the same job core
 * (job-core.ts) for waiters, listeners and terminal events:
 *
 * - jobs are BullMQ jobs named by the request id in the queue `<prefix>` (default "flux");
 * - progress: the worker's `job.updateProgress({step, total})`, seen here through `QueueEvents`;
 * - cancel: a queued job is removed; a running one gets a Redis key `<prefix>:cancel:<id>` plus a pub/sub message on
 *   `<prefix>:cancel`, which the worker turns into its AbortSignal (checked between steps);
 * - results (PNG data URIs) are not the BullMQ return value: the worker stores them under `<prefix>:result:<id>` for
 *   `--result-ttl` seconds, so any server answers GET with them until then;
 * - a worker that dies mid-job (SIGKILL, crash, lost machine) stops renewing its lock; another worker's stalled-job
 *   check puts the job back in the queue, up to `maxStalledCount` times, then it fails with `worker_lost`;
 * - generation errors are not retried (they would fail again): the worker throws BullMQ's `UnrecoverableError`;
 * - webhooks are BullMQ jobs too (redis-outbox.ts), added by whoever ends the job and delivered by the servers.
 */
import { Queue, QueueEvents, type ConnectionOptions, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { JobTracker, isTerminal } from './job-core.ts';
import { DuplicateJobError, QueueClosedError, QueueFullError, type JobData, type JobEvent, type JobQueue, type JobResult, type JobState, type JobStatus } from './job-queue.ts';
import type { OutboxOptions, WebhookOutbox } from './outbox.ts';
import { RedisOutbox, addDeliveries, webhookQueueName } from './redis-outbox.ts';
import { DEFAULT_PREFIX, connectRedis, decodeFailedReason, redisKeys, redisOptions, toStoredData, withTimeout, type StoredJobData } from './redis-util.ts';
import { deliveryFor } from './webhook-payloads.ts';
import type { WebhookSender } from './webhook.ts';

export * from './redis-util.ts';

export interface RedisQueueOptions {
  /** redis://[user:pass@]host:port[/db] */
  url: string;
  /** Queue name and key prefix (default "flux"): servers and workers of one deployment share it. */
  prefix?: string;
  /** Waiting + running jobs on the shared queue before 429 (default 16). */
  maxQueued?: number;
  /** How long finished jobs (their status; results are the workers' --result-ttl) stay in Redis (default 3600 s). */
  resultTtlS?: number;
  /** Times a job may lose its worker before it fails (default 1; BullMQ's maxStalledCount, set on the workers). */
  maxStalledCount?: number;
  /** How often a server looks for webhook deliveries whose server died mid-attempt (default 30 000 ms). */
  webhookStalledIntervalMs?: number;
  /** A delivery attempt's lock, renewed while its server lives (default 60 000 ms). */
  webhookLockMs?: number;
  /** On close without cancel: wait this long for this server's jobs, then leave them to the queue (default 30 s). */
  drainMs?: number;
  /** Safety net for missed events (reconnects): poll own unfinished jobs every this often (default 2000 ms). */
  pollMs?: number;
  onChange?: (job: JobStatus, previous: JobState | undefined) => void;
}

/** What this server follows of a job it enqueued. */
interface Owned {
  id: string;
  model: string;
  last: JobState;
  finishing: boolean;
}

export class RedisJobQueue implements JobQueue {
  readonly queue: Queue;
  readonly events: QueueEvents;
  readonly redis: Redis;
  /** The webhook deliveries' queue (`<prefix>-webhooks`). */
  readonly hooks: Queue;
  private readonly prefix: string;
  private readonly connection: ConnectionOptions;
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly maxQueued: number;
  private readonly resultTtlS: number;
  private readonly maxStalledCount: number;
  private readonly drainMs: number;
  private readonly webhookStalledIntervalMs?: number;
  private readonly webhookLockMs?: number;
  private readonly tracker = new JobTracker();
  private readonly owned = new Map<string, Owned>();
  /** Statuses this server saw end (bounded), for look-ups once Redis has let them go. */
  private readonly seen = new Map<string, JobStatus>();
  private readonly poller: NodeJS.Timeout;
  private closed = false;
  private outbox?: RedisOutbox;

  /** State-change callback (metrics, logs); `createServer`'s queueFactory passes its own. */
  set onChange(f: ((job: JobStatus, previous: JobState | undefined) => void) | undefined) {
    this.tracker.onChange = f;
  }
  get onChange() {
    return this.tracker.onChange;
  }

  private constructor(opts: RedisQueueOptions, queue: Queue, hooks: Queue, events: QueueEvents, redis: Redis) {
    this.queue = queue;
    this.hooks = hooks;
    this.events = events;
    this.redis = redis;
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.connection = redisOptions(opts.url);
    this.keys = redisKeys(this.prefix);
    this.maxQueued = opts.maxQueued ?? 16;
    this.resultTtlS = opts.resultTtlS ?? 3600;
    this.maxStalledCount = opts.maxStalledCount ?? 1;
    this.drainMs = opts.drainMs ?? 30_000;
    this.webhookStalledIntervalMs = opts.webhookStalledIntervalMs;
    this.webhookLockMs = opts.webhookLockMs;
    this.tracker.onChange = opts.onChange;
    events.on('active', ({ jobId }) => this.onActive(jobId));
    events.on('waiting', ({ jobId }) => this.onWaiting(jobId));
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data));
    events.on('completed', ({ jobId }) => void this.settle(jobId));
    events.on('failed', ({ jobId }) => void this.settle(jobId).then(() => this.ensureFailureWebhook(jobId)));
    events.on('removed', ({ jobId }) => void this.settle(jobId));
    events.on('error', () => {}); // reconnects are ioredis's job; the poller covers missed events
    this.poller = setInterval(() => {
      for (const id of this.owned.keys()) void this.settle(id);
    }, opts.pollMs ?? 2000);
    this.poller.unref();
  }

  /** Connects (fails with a clear error when Redis is unreachable) and listens to the queue's events. */
  static async connect(opts: RedisQueueOptions): Promise<RedisJobQueue> {
    const prefix = opts.prefix ?? DEFAULT_PREFIX;
    const name = redisKeys(prefix).queue;
    const redis = await connectRedis(opts.url);
    // BullMQ makes (and closes) its own connections from these options; ours (`redis`) is for results and cancels.
    const connection = redisOptions(opts.url);
    const queue = new Queue(name, { connection });
    const hooks = new Queue(webhookQueueName(prefix), { connection });
    const events = new QueueEvents(name, { connection });
    // ioredis reconnects; requests fail meanwhile and say so
    queue.on('error', () => {});
    hooks.on('error', () => {});
    events.on('error', () => {});
    await Promise.all([queue.waitUntilReady(), hooks.waitUntilReady(), events.waitUntilReady()]);
    return new RedisJobQueue(opts, queue, hooks, events, redis);
  }

  async enqueue(id: string, data: JobData): Promise<{ done: Promise<JobStatus> }> {
    if (this.closed) throw new QueueClosedError();
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
    const busy = Object.values(counts).reduce((a, b) => a + b, 0);
    if (busy >= this.maxQueued) throw new QueueFullError(data.model, this.maxQueued, Math.max(1, Math.ceil(busy / Math.max(1, counts.active ?? 1))));
    if (await this.queue.getJob(id)) throw new DuplicateJobError(id);
    this.owned.set(id, { id, model: data.model, last: 'queued', finishing: false });
    const done = this.tracker.done(id);
    await this.queue.add(id, toStoredData(data), {
      jobId: id,
      attempts: 1,
      removeOnComplete: { age: this.resultTtlS, count: 10_000 },
      removeOnFail: { age: this.resultTtlS, count: 10_000 },
    });
    const status: JobStatus = { request_id: id, model: data.model, status: 'queued', created_at: new Date().toISOString() };
    this.tracker.transition(status, undefined, Math.max(0, busy));
    return { done };
  }

  async get(id: string): Promise<JobStatus | undefined> {
    const job = await this.queue.getJob(id);
    if (!job) {
      const kept = this.seen.get(id);
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
        const data = job.data as StoredJobData;
        await job.remove();
        // Removed before a worker took it: this server owes its webhook.
        const status: JobStatus = { request_id: id, model: data.model, status: 'cancelled', created_at: new Date(job.timestamp).toISOString(), finished_at: new Date().toISOString(), error: { type: 'cancelled', message: reason } };
        const hook = deliveryFor(data.request, status, 'completed');
        if (hook) await addDeliveries(this.hooks, [hook], { keepS: this.deliveryKeepS });
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
    return this.tracker.subscribe(id, listener);
  }

  async depth(_model?: string): Promise<number> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed');
    return Object.values(c).reduce((a, b) => a + b, 0);
  }

  async running(_model?: string): Promise<number> {
    return (await this.queue.getJobCounts('active')).active ?? 0;
  }

  /** A delivery's record outlives its job's, so re-adding it (a sweep) is a no-op. */
  private get deliveryKeepS(): number {
    return this.resultTtlS + 86_400;
  }

  startWebhooks(sender: WebhookSender, opts: OutboxOptions): WebhookOutbox {
    this.outbox = new RedisOutbox(sender, { ...opts, connection: this.connection, prefix: this.prefix, stalledIntervalMs: this.webhookStalledIntervalMs, lockMs: this.webhookLockMs });
    void this.sweepFailed();
    return this.outbox;
  }

  /** Failed jobs whose webhook nobody added (their worker was lost while no server listened): add it now. */
  private async sweepFailed(): Promise<void> {
    try {
      for (const job of await this.queue.getFailed(0, 999)) await this.ensureFailureWebhook(job.id!, job);
    } catch {
      // Redis gone: the next start sweeps again
    }
  }

  /** A failed job's `completed` webhook, added once whoever adds it (the worker usually did already). */
  private async ensureFailureWebhook(id: string, known?: BullJob): Promise<void> {
    if (this.closed) return;
    try {
      const job = known ?? (await this.queue.getJob(id));
      const data = job?.data as StoredJobData | undefined;
      if (!job || data?.request.webhook === undefined) return;
      const status = await this.statusOf(job, false);
      if (status.status !== 'failed' && status.status !== 'cancelled') return;
      const hook = deliveryFor(data.request, status, 'completed');
      if (hook) await addDeliveries(this.hooks, [hook], { keepS: this.deliveryKeepS });
    } catch {
      // Redis gone or the job removed meanwhile: the start-up sweep covers it
    }
  }

  async close(opts: { cancel?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.cancel) for (const id of [...this.owned.keys()]) await this.cancel(id, 'cancelled: the server is shutting down').catch(() => false);
    const deadline = Date.now() + (opts.cancel ? Math.max(this.drainMs, 10_000) : this.drainMs);
    while (this.owned.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      for (const id of [...this.owned.keys()]) await this.settle(id).catch(() => {});
    }
    // Jobs still unfinished stay on the shared queue (any server shows their status; their webhooks are Redis jobs
    // too); answer their waiters now.
    for (const own of this.owned.values()) this.tracker.release(own.id, { request_id: own.id, model: own.model, status: own.last, created_at: new Date().toISOString() });
    this.owned.clear();
    clearInterval(this.poller);
  }

  /** Disconnects (after `close` and the webhooks' flush). Bounded: with Redis down BullMQ's close would wait forever. */
  async closeStore(): Promise<void> {
    await this.outbox?.close();
    await withTimeout(Promise.all([this.events.close(), this.queue.close(), this.hooks.close()]), 5000);
    this.redis.disconnect();
  }

  // ---- internals -------------------------------------------------------------------------------------------------------

  private remember(status: JobStatus): void {
    const { result: _r, ...small } = status; // results stay in Redis (their TTL), not in this server's memory
    this.seen.set(status.request_id, small);
    while (this.seen.size > 1000) this.seen.delete(this.seen.keys().next().value!);
  }

  private onActive(id: string): void {
    const own = this.owned.get(id);
    const status: JobStatus = { request_id: id, model: own?.model ?? 'unknown', status: 'running', created_at: new Date().toISOString() };
    if (own && own.last !== 'running') {
      const prev = own.last;
      own.last = 'running';
      this.tracker.transition(status, prev);
    } else this.tracker.emit(id, { type: 'running', request_id: id });
  }

  private onWaiting(id: string): void {
    // a stalled job put back in the queue (its worker died): queued again until another worker takes it
    const own = this.owned.get(id);
    if (own && own.last === 'running') own.last = 'queued';
    if (this.tracker.listening(id)) this.tracker.emit(id, { type: 'queued', request_id: id, queue_position: 0 });
  }

  private onProgress(id: string, data: unknown): void {
    const p = data as { step?: number; total?: number; preview?: string };
    if (typeof p?.step !== 'number' || typeof p.total !== 'number') return;
    if (typeof p.preview === 'string') this.tracker.preview(id, p.step, p.total, p.preview);
    else this.tracker.step(id, p.step, p.total);
  }

  /** When a job has finished (or vanished): its owner's `done` resolves, listeners hear it. Idempotent. */
  private async settle(id: string): Promise<void> {
    const own = this.owned.get(id);
    if (!own && !this.tracker.listening(id)) return;
    if (own?.finishing) return;
    if (own) own.finishing = true;
    try {
      const job = await this.queue.getJob(id);
      let status: JobStatus | undefined;
      if (job) {
        status = await this.statusOf(job, false);
        if (!isTerminal(status.status)) return;
      } else {
        const reason = await this.redis.get(this.keys.cancel(id));
        const kept = this.seen.get(id);
        if (kept) status = kept;
        else if (reason !== null) {
          status = { request_id: id, model: own?.model ?? 'unknown', status: 'cancelled', created_at: new Date().toISOString(), finished_at: new Date().toISOString(), error: { type: 'cancelled', message: reason } };
        } else return; // not added yet, or long gone
      }
      if (own) this.owned.delete(id);
      this.remember(status);
      this.tracker.finish(status, own?.last, { notify: own !== undefined });
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
      const finished = { ...base, finished_at: new Date(job.finishedOn ?? Date.now()).toISOString() };
      if (raw === null) return { ...finished, status: 'succeeded', error: { type: 'result_expired', message: 'the job succeeded but its result is no longer kept (older than --result-ttl)' } };
      return { ...finished, status: 'succeeded', result: JSON.parse(raw) as JobResult };
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
