/**
 * A generation worker on the shared Redis queue (`flux worker --model PATH --redis URL`): takes jobs one at a time
 * (`concurrency`), runs the same job function as the server's in-process queue, stores the response body under
 * `<prefix>:result:<id>` with a TTL, and reports steps as BullMQ job progress. Cancel requests arrive on the pub/sub
 * channel `<prefix>:cancel` (and the key `<prefix>:cancel:<id>` for jobs cancelled before they started) and abort
 * the job's signal, which the pipeline checks between steps.
 *
 * Webhooks: the worker adds the job's `start` delivery when it begins and its `completed` delivery before it
 * reports the job done (redis-outbox.ts; a re-run after a crash adds nothing twice). It never delivers them itself
 * (the servers hold the secret) and never loads the HTTP server.
 */
import { hostname } from 'node:os';
import { FluxError } from '@flux-ts/core';
import { Queue, UnrecoverableError, Worker as BullWorker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import type { Generator } from './generator.ts';
import { cancelledError, toJobError } from './job-core.ts';
import type { JobError, JobResult, JobStatus } from './job-queue.ts';
import { createJobWorker } from './job-worker.ts';
import { addDeliveries, webhookQueueName } from './redis-outbox.ts';
import { DEFAULT_PREFIX, connectRedis, redisOptions, withTimeout, encodeJobError, fromStoredData, redisKeys, type StoredJobData, type StoredReturn } from './redis-util.ts';
import { deliveryFor } from './webhook-payloads.ts';

export interface RedisWorkerOptions {
  url: string;
  generators: readonly Generator[];
  prefix?: string;
  /** Jobs at once in this process (default 1: a model uses the whole machine). */
  concurrency?: number;
  /** How long a job's lock lasts without renewal (default 120 000 ms). A worker blocked longer than this (one huge
   *  synchronous step) is taken for dead, so keep it above the slowest step. */
  lockDurationMs?: number;
  /** How often this worker checks for jobs whose worker died (default 30 000 ms). */
  stalledIntervalMs?: number;
  /** Times a job may lose its worker before it fails (default 1). Give all workers the same value. */
  maxStalledCount?: number;
  /** Seconds a result is kept in Redis for status look-ups (default 3600; the servers' --result-ttl). */
  resultTtlS?: number;
  costPerImage?: number;
  log?: (msg: string) => void;
}

export interface RedisWorkerHandle {
  readonly name: string;
  /** Finishes the current job (or, with `cancel`, lets it fail back to the queue quickly), then disconnects. */
  close(opts?: { force?: boolean }): Promise<void>;
}

export async function startRedisWorker(opts: RedisWorkerOptions): Promise<RedisWorkerHandle> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const keys = redisKeys(prefix);
  const log = opts.log ?? (() => {});
  const resultTtlS = opts.resultTtlS ?? 3600;
  const name = `${hostname()}:${process.pid}`;
  const run = createJobWorker(opts.generators, {
    costPerImage: opts.costPerImage,
    log: { error: (obj, msg) => log(`${msg}: ${String((obj as { err?: unknown }).err)}`) },
  });

  const redis = await connectRedis(opts.url);
  const hooks = new Queue(webhookQueueName(prefix), { connection: redisOptions(opts.url) });
  hooks.on('error', () => {});
  const deliveryKeepS = resultTtlS + 86_400;
  /** Adds a webhook delivery the job's request asked for (once, however often this runs). */
  const owe = async (data: StoredJobData, status: JobStatus, event: 'start' | 'completed') => {
    const d = deliveryFor(data.request, status, event);
    if (d) await addDeliveries(hooks, [d], { keepS: deliveryKeepS });
  };
  const sub = new Redis(redisOptions(opts.url));
  sub.on('error', () => {});
  const active = new Map<string, AbortController>();
  sub.on('message', (_ch, msg) => {
    try {
      const { id, reason } = JSON.parse(msg) as { id: string; reason: string };
      active.get(id)?.abort(new FluxError('aborted', reason));
    } catch {
      // not ours
    }
  });
  await sub.subscribe(keys.cancelChannel);

  const processor = async (job: BullJob): Promise<StoredReturn> => {
    const id = job.id!;
    const controller = new AbortController();
    active.set(id, controller);
    const t0 = performance.now();
    log(`job ${id} started (attempt ${job.attemptsStarted}, stalled ${job.stalledCounter ?? 0} time(s) before)`);
    const stored = job.data as StoredJobData;
    const base: JobStatus = { request_id: id, model: stored.model, status: 'running', created_at: new Date(job.timestamp).toISOString(), started_at: new Date().toISOString() };
    let result: JobResult;
    try {
      const cancelled = await redis.get(keys.cancel(id));
      if (cancelled !== null) throw new FluxError('aborted', cancelled);
      await owe(stored, base, 'start');
      const data = fromStoredData(stored);
      result = await run(id, data, {
        signal: controller.signal,
        progress: (step, total) => void job.updateProgress({ step, total }).catch(() => {}),
        // a preview rides on the job's progress (a few KB of PNG): the servers' QueueEvents hear it
        preview: (step, total, image) => void job.updateProgress({ step, total, preview: image }).catch(() => {}),
      });
    } catch (e) {
      const err: JobError = controller.signal.aborted ? cancelledError(controller.signal.reason) : e instanceof FluxError && e.code === 'aborted' ? cancelledError(e) : toJobError(e);
      const state = err.type === 'cancelled' ? 'cancelled' : 'failed';
      log(`job ${id} ${state}: ${err.message}`);
      await owe(stored, { ...base, status: state, finished_at: new Date().toISOString(), error: err }, 'completed');
      // Not retried: a generation error would fail again. (A dead worker is BullMQ's stalled-job retry instead.)
      throw new UnrecoverableError(encodeJobError(err));
    } finally {
      active.delete(id);
    }
    // Stored, and its webhook owed, before BullMQ hears "completed": a crash before this point runs the job again.
    await redis.set(keys.result(id), JSON.stringify(result), 'EX', resultTtlS);
    await owe(stored, { ...base, status: 'succeeded', finished_at: new Date().toISOString(), result }, 'completed');
    log(`job ${id} succeeded in ${Math.round(performance.now() - t0)} ms`);
    return { stored: true, runtime_ms: Math.round(performance.now() - t0), worker: name };
  };

  const worker = new BullWorker(keys.queue, processor, {
    connection: redisOptions(opts.url), // BullMQ owns (and closes) the connections it makes from options
    concurrency: opts.concurrency ?? 1,
    lockDuration: opts.lockDurationMs ?? 120_000,
    stalledInterval: opts.stalledIntervalMs ?? 30_000,
    maxStalledCount: opts.maxStalledCount ?? 1,
    name,
  });
  let lastError = '';
  worker.on('error', (e) => {
    if (e.message !== lastError) log(`worker error: ${e.message} (retrying)`); // once per distinct error, not per retry
    lastError = e.message;
  });
  worker.on('ready', () => (lastError = ''));
  await worker.waitUntilReady();

  return {
    name,
    async close({ force = false } = {}) {
      // Bounded: with Redis down BullMQ would wait for a reconnect forever; a job cut short goes back to the
      // queue when its lock expires.
      await withTimeout(worker.close(force), force || active.size === 0 ? 5000 : Math.max(10_000, opts.lockDurationMs ?? 120_000));
      await withTimeout(hooks.close(), 5000);
      sub.disconnect();
      redis.disconnect();
      for (const g of opts.generators) await g.close?.();
    },
  };
}
