/**
 * Where the in-process queue keeps its jobs and owed webhooks: `MemoryJobStore` (lost with the process) or the
 * SQLite journal (journal.ts, survives a crash). Every change that must not be half-done (a job finishing and the
 * webhook it owes) is one call, so the journal makes it one transaction.
 */
import type { JobData, JobStatus } from './job-queue.ts';
import type { Delivery } from './webhook.ts';

/** A job not finished yet, as the store keeps it. */
export interface StoredJob {
  id: string;
  data: JobData;
  state: 'queued' | 'running';
  /** Times it was started (a restart after an interrupted run counts it). */
  attempts: number;
  created_at: string;
}

/** A webhook message owed: `attempt` attempts made so far, the next one due at `next_at` (ms since the epoch). */
export interface PendingDelivery extends Delivery {
  attempt: number;
  next_at: number;
}

export interface JobStore {
  /** Whether what it holds survives the process (then a shutdown need not wait for later retries). */
  readonly durable: boolean;
  has(id: string): boolean;
  insert(job: StoredJob): void;
  /** The job started: counts the attempt, records the `start` deliveries; returns the attempts so far. */
  started(id: string, startedAt: string, deliveries: readonly Delivery[]): number;
  /** An interrupted job goes back to waiting (recovery). */
  requeue(id: string): void;
  /** The job finished: its final status (kept until `expiresAt`) and the deliveries it owes, together. */
  finish(s: JobStatus, deliveries: readonly Delivery[], expiresAt: number): void;
  /** A finished job's status, while kept. */
  finished(id: string): JobStatus | undefined;
  /** Jobs not finished, oldest first (recovery after a restart). */
  unfinished(): StoredJob[];
  /** Deliveries due at `now`, oldest first, not in `skip` (in flight). */
  due(now: number, limit: number, skip: ReadonlySet<string>): PendingDelivery[];
  /** When the next delivery is due (ms since the epoch), if any is owed. */
  nextDueAt(): number | undefined;
  pendingDeliveries(): number;
  delivered(id: string): void;
  retry(id: string, attempt: number, nextAt: number): void;
  gaveUp(id: string): void;
  /** Forgets finished jobs past their retention. */
  prune(now: number): void;
  close(): void;
}

export interface MemoryStoreOptions {
  /** Finished jobs kept for status look-ups (default 1000, oldest dropped first). */
  keepFinished?: number;
  /** Bytes of finished jobs' results kept (default 256 MiB, oldest dropped first). */
  keepFinishedBytes?: number;
}

/** The store without a journal: everything in memory, finished results bounded by count and bytes. */
export class MemoryJobStore implements JobStore {
  readonly durable = false;
  private readonly jobs = new Map<string, StoredJob>();
  private readonly done = new Map<string, { status: JobStatus; bytes: number; expiresAt: number }>();
  private doneBytes = 0;
  private readonly deliveries = new Map<string, PendingDelivery>();
  private readonly keepFinished: number;
  private readonly keepFinishedBytes: number;

  constructor(opts: MemoryStoreOptions = {}) {
    this.keepFinished = opts.keepFinished ?? 1000;
    this.keepFinishedBytes = opts.keepFinishedBytes ?? 256 * 1024 * 1024;
  }

  has(id: string): boolean {
    return this.jobs.has(id) || this.done.has(id);
  }

  insert(job: StoredJob): void {
    this.jobs.set(job.id, job);
  }

  started(id: string, _startedAt: string, deliveries: readonly Delivery[]): number {
    const j = this.jobs.get(id);
    if (j) {
      j.state = 'running';
      j.attempts++;
    }
    this.add(deliveries);
    return j?.attempts ?? 1;
  }

  requeue(id: string): void {
    const j = this.jobs.get(id);
    if (j) j.state = 'queued';
  }

  finish(s: JobStatus, deliveries: readonly Delivery[], expiresAt: number): void {
    this.jobs.delete(s.request_id);
    const bytes = resultBytes(s);
    this.done.set(s.request_id, { status: s, bytes, expiresAt });
    this.doneBytes += bytes;
    while (this.done.size > this.keepFinished || (this.doneBytes > this.keepFinishedBytes && this.done.size > 0)) {
      const [oldest, v] = this.done.entries().next().value!;
      this.done.delete(oldest);
      this.doneBytes -= v.bytes;
    }
    this.add(deliveries);
  }

  private add(deliveries: readonly Delivery[]): void {
    const now = Date.now();
    for (const d of deliveries) if (!this.deliveries.has(d.id)) this.deliveries.set(d.id, { ...d, attempt: 0, next_at: now });
  }

  finished(id: string): JobStatus | undefined {
    const f = this.done.get(id);
    if (!f) return undefined;
    if (f.expiresAt <= Date.now()) {
      this.done.delete(id);
      this.doneBytes -= f.bytes;
      return undefined;
    }
    return f.status;
  }

  unfinished(): StoredJob[] {
    return [...this.jobs.values()];
  }

  due(now: number, limit: number, skip: ReadonlySet<string>): PendingDelivery[] {
    return [...this.deliveries.values()]
      .filter((d) => d.next_at <= now && !skip.has(d.id))
      .sort((a, b) => a.next_at - b.next_at)
      .slice(0, limit);
  }

  nextDueAt(): number | undefined {
    let t: number | undefined;
    for (const d of this.deliveries.values()) if (t === undefined || d.next_at < t) t = d.next_at;
    return t;
  }

  pendingDeliveries(): number {
    return this.deliveries.size;
  }

  delivered(id: string): void {
    this.deliveries.delete(id);
  }

  retry(id: string, attempt: number, nextAt: number): void {
    const d = this.deliveries.get(id);
    if (d) Object.assign(d, { attempt, next_at: nextAt });
  }

  gaveUp(id: string): void {
    this.deliveries.delete(id);
  }

  prune(now: number): void {
    for (const [id, f] of this.done) {
      if (f.expiresAt > now) continue;
      this.done.delete(id);
      this.doneBytes -= f.bytes;
    }
  }

  close(): void {}
}

/** The size of a result as kept: its image strings (data URIs) dominate. */
export function resultBytes(s: JobStatus): number {
  const images = s.result?.images;
  return Array.isArray(images) ? images.reduce((n: number, i) => n + (typeof i === 'string' ? i.length : 0), 0) : 0;
}
