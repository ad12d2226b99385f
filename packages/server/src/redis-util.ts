/**
 * What the Redis queue (redis-queue.ts) and the Redis worker (redis-worker.ts) share: key names, job data as
 * stored, failure reasons, connections. Nothing here knows of HTTP.
 */
import { FluxError } from '@flux-ts/core';
import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { JobData, JobError } from './job-queue.ts';

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

/** ioredis options from a redis:// URL, for BullMQ to make its own connections with. */
export function redisOptions(url: string): RedisOptions & BullRedisOptions {
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
