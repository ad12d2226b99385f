/**
 * The embedded webhook outbox: owed deliveries live in the job store (the SQLite journal by default), each retried
 * on the schedule (Svix's by default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) until it is answered 2xx, refused for
 * good (a 4xx other than 408/429, a target that is not public) or out of attempts. A restart resumes what the
 * journal holds, so a SIGKILLed server still delivers what it owed.
 *
 * `flush()` (shutdown) waits for the jobs that will owe a webhook, for attempts in flight, and for retries due within
 * `flushHorizonMs` (default 2 s); a retry due later stays in the journal for the next start (without a journal it
 * is abandoned, and the log says so).
 */
import type { JobStore, PendingDelivery } from './job-store.ts';
import type { AttemptOutcome, Delivery, WebhookSender } from './webhook.ts';

export interface OutboxOptions {
  /** Delays before the 2nd, 3rd, ... attempt (ms). */
  schedule: readonly number[];
  /** Attempts at once (default 8). */
  concurrency?: number;
  /** Each delivery's end: delivered, or failed (given up). */
  onOutcome?: (d: Delivery, outcome: 'delivered' | 'failed', attempts: number, last: AttemptOutcome) => void;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** On flush, wait for retries due within this many ms (default 2000). */
  flushHorizonMs?: number;
}

/** What the server needs of an outbox, embedded or on Redis. */
export interface WebhookOutbox {
  /** Looks for due deliveries now (after the queue recorded new ones). */
  kick(): void;
  /** Waits until nothing is in flight and nothing owed is left that only this process would deliver. */
  flush(): Promise<void>;
  /** Deliveries in flight or owed by this process alone. */
  readonly pendingCount: number;
  /** Stops now: attempts in flight are cut, no retry starts (the shutdown deadline). */
  abortAll(): void;
  close(): Promise<void>;
}

export class Outbox implements WebhookOutbox {
  private readonly store: JobStore;
  private readonly sender: WebhookSender;
  private readonly opts: OutboxOptions;
  private readonly inflight = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private waiters: (() => void)[] = [];

  /** Jobs not finished yet that will owe a webhook (the queue's count). */
  private readonly owedSoon: () => number;

  constructor(store: JobStore, sender: WebhookSender, opts: OutboxOptions, owedSoon: () => number = () => 0) {
    this.store = store;
    this.sender = sender;
    this.opts = opts;
    this.owedSoon = owedSoon;
    queueMicrotask(() => this.kick()); // owed deliveries from before a restart
  }

  get pendingCount(): number {
    return this.inflight.size + (this.stopped ? 0 : this.owedSoon() + (this.store.durable ? 0 : this.store.pendingDeliveries()));
  }

  kick(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const room = (this.opts.concurrency ?? 8) - this.inflight.size;
    if (room > 0) for (const d of this.store.due(Date.now(), room, this.inflight)) void this.attempt(d);
    const next = this.store.nextDueAt();
    if (next !== undefined && this.inflight.size < (this.opts.concurrency ?? 8)) {
      // at least 5 ms apart: a delivery due now but in flight must not spin the loop
      this.timer = setTimeout(() => this.kick(), Math.min(2 ** 31 - 1, Math.max(5, next - Date.now())));
      this.timer.unref();
    }
    this.wake();
  }

  private async attempt(d: PendingDelivery): Promise<void> {
    this.inflight.add(d.id);
    const outcome = await this.sender.attempt(d);
    const attempts = d.attempt + 1;
    try {
      if (outcome.ok) {
        this.store.delivered(d.id);
        this.opts.log?.info({ reqId: d.request_id, webhookId: d.id, attempt: attempts, status: outcome.status }, 'webhook delivered');
        this.opts.onOutcome?.(d, 'delivered', attempts, outcome);
      } else if (this.sender.aborted) {
        // the shutdown deadline: left owed (in the journal, for the next start)
      } else if (outcome.permanent || attempts > this.opts.schedule.length) {
        this.store.gaveUp(d.id);
        this.opts.log?.warn({ reqId: d.request_id, webhookId: d.id, attempts, status: outcome.status, err: outcome.error }, 'webhook delivery gave up');
        this.opts.onOutcome?.(d, 'failed', attempts, outcome);
      } else {
        const delay = this.opts.schedule[attempts - 1]!;
        this.store.retry(d.id, attempts, Date.now() + delay);
        this.opts.log?.warn({ reqId: d.request_id, webhookId: d.id, attempt: attempts, status: outcome.status, err: outcome.error, retry_in_ms: delay }, 'webhook attempt failed');
      }
    } finally {
      this.inflight.delete(d.id);
      this.kick();
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async flush(): Promise<void> {
    const horizon = this.opts.flushHorizonMs ?? 2000;
    for (;;) {
      if (this.stopped) return;
      const next = this.store.nextDueAt();
      const dueSoon = next !== undefined && next <= Date.now() + horizon;
      if (this.inflight.size === 0 && this.owedSoon() === 0 && !dueSoon) break;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const left = this.store.pendingDeliveries();
    if (left > 0) {
      this.opts.log?.warn(
        { deliveries: left },
        this.store.durable ? 'webhook retries due later stay in the journal; they resume at the next start' : 'webhook retries due later are abandoned: no journal keeps them (run with --journal)',
      );
    }
  }

  abortAll(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.sender.abortAll();
    this.wake();
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    while (this.inflight.size > 0) await new Promise<void>((r) => this.waiters.push(r));
  }
}
