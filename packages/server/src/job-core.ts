/**
 * The job core both queues share (the in-process queue and the Redis one): who waits for a job (`done`), who listens
 * to its events, what a state change tells them, and how a failure becomes a `JobError`. A queue decides WHEN a job
 * changes state; this decides what follows from it, the same way for both.
 */
import { FluxError } from '@flux-ts/core';
import { apiCode } from './errors.ts';
import type { JobError, JobEvent, JobResult, JobState, JobStatus } from './job-queue.ts';

export const isTerminal = (s: JobState): s is 'succeeded' | 'failed' | 'cancelled' => s === 'succeeded' || s === 'failed' || s === 'cancelled';

/** The event that announces a terminal status. */
export function terminalEvent(s: JobStatus): JobEvent {
  if (s.status === 'succeeded') return { type: 'succeeded', request_id: s.request_id, result: s.result as JobResult };
  if (s.status === 'failed') return { type: 'failed', request_id: s.request_id, error: s.error ?? { type: 'internal_error', message: 'failed' } };
  return { type: 'cancelled', request_id: s.request_id };
}

/** A job failure as the API reports it: library errors keep their message (code in the API's casing), anything else is generic. */
export function toJobError(err: unknown): JobError {
  if (err instanceof FluxError) return { type: apiCode(err.code), message: err.message };
  return { type: 'internal_error', message: 'the generation failed with an internal error (see the server log)' };
}

/** A cancellation's error (the reason an AbortSignal carried, or the message given). */
export function cancelledError(reason: unknown): JobError {
  return { type: 'cancelled', message: reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : 'cancelled' };
}

interface Tracked {
  resolve?: (s: JobStatus) => void;
  done?: Promise<JobStatus>;
  listeners: Set<(e: JobEvent) => void>;
}

/**
 * Waiters and listeners of the jobs a process follows. `transition` reports a state change (metrics via `onChange`,
 * the matching event to listeners); `finish` reports the terminal one, resolves `done` and forgets the job.
 */
export class JobTracker {
  private readonly jobs = new Map<string, Tracked>();
  onChange?: (s: JobStatus, previous: JobState | undefined) => void;

  constructor(onChange?: (s: JobStatus, previous: JobState | undefined) => void) {
    this.onChange = onChange;
  }

  private entry(id: string): Tracked {
    let t = this.jobs.get(id);
    if (!t) this.jobs.set(id, (t = { listeners: new Set() }));
    return t;
  }

  /** The promise of a job's final status (created on first call). */
  done(id: string): Promise<JobStatus> {
    const t = this.entry(id);
    t.done ??= new Promise<JobStatus>((r) => (t.resolve = r));
    return t.done;
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    const t = this.entry(id);
    t.listeners.add(listener);
    return () => {
      t.listeners.delete(listener);
      if (t.listeners.size === 0 && !t.done && this.jobs.get(id) === t) this.jobs.delete(id);
    };
  }

  listening(id: string): boolean {
    return (this.jobs.get(id)?.listeners.size ?? 0) > 0;
  }

  emit(id: string, e: JobEvent): void {
    const t = this.jobs.get(id);
    if (!t) return;
    for (const l of [...t.listeners]) {
      try {
        l(e);
      } catch {
        // a listener's failure (a closed socket) must not stop the job or the other listeners
      }
    }
  }

  /** A non-terminal change: queued (again) or running. */
  transition(s: JobStatus, previous: JobState | undefined, queuePosition = 0): void {
    this.onChange?.(s, previous);
    if (s.status === 'running') this.emit(s.request_id, { type: 'running', request_id: s.request_id });
    else if (s.status === 'queued') this.emit(s.request_id, { type: 'queued', request_id: s.request_id, queue_position: queuePosition });
  }

  step(id: string, step: number, total: number): void {
    this.emit(id, { type: 'step', request_id: id, step, total_steps: total });
  }

  preview(id: string, step: number, total: number, image: string): void {
    this.emit(id, { type: 'preview', request_id: id, step, total_steps: total, image });
  }

  /** The terminal change: listeners hear it, `done` resolves, the job is forgotten here. */
  finish(s: JobStatus, previous: JobState | undefined, opts: { notify?: boolean } = {}): void {
    if (opts.notify !== false) this.onChange?.(s, previous);
    this.emit(s.request_id, terminalEvent(s));
    const t = this.jobs.get(s.request_id);
    this.jobs.delete(s.request_id);
    t?.resolve?.({ ...s });
  }

  /** Answers every waiter with the status it has now (a shared queue's server going away: the job goes on elsewhere). */
  release(id: string, s: JobStatus): void {
    const t = this.jobs.get(id);
    this.jobs.delete(id);
    t?.resolve?.({ ...s });
  }
}
