/**
 * Webhooks on the shared Redis queue: every delivery is a BullMQ job on `<prefix>-webhooks`, named by its Standard
 * Webhooks message id, so adding it twice (a worker that re-runs a job after a crash, a server that re-checks a
 * failed job) adds it once. Whoever ends a job adds its delivery (the worker when the job ran, a server when it
 * cancelled a waiting job or saw a job fail because its worker was lost), in Redis before anyone is told, so a
 * SIGKILLed server or worker loses none.
 *
 * Servers deliver them (they hold the secret): one attempt per BullMQ attempt, the next after the schedule's delay
 * (BullMQ's custom backoff), until a 2xx, a permanent refusal or the end of the schedule. A server killed during an
 * attempt leaves a stalled job that a live (or restarted) server takes again.
 */
import { Queue, UnrecoverableError, Worker as BullWorker, type ConnectionOptions, type Job as BullJob } from 'bullmq';
import type { OutboxOptions, WebhookOutbox } from './outbox.ts';
import type { Delivery, WebhookSender } from './webhook.ts';
import { withTimeout } from './redis-util.ts';

export const webhookQueueName = (prefix: string) => `${prefix}-webhooks`;

/** How long a finished delivery's record is kept (it is what makes a second `add` of the same message a no-op). */
export interface DeliveryQueueOptions {
  keepS: number;
}

/** Adds deliveries (each once, whoever adds it and however often). */
export async function addDeliveries(queue: Queue, deliveries: readonly Delivery[], opts: DeliveryQueueOptions): Promise<void> {
  for (const d of deliveries) {
    await queue.add(d.event, d, {
      jobId: d.id,
      // The consumer decides when to stop (the schedule is the servers'); this only has to be large enough.
      attempts: 1000,
      backoff: { type: 'schedule' },
      removeOnComplete: { age: opts.keepS },
      removeOnFail: { age: opts.keepS },
    });
  }
}

export interface RedisOutboxOptions extends OutboxOptions {
  connection: ConnectionOptions;
  prefix: string;
  /** How often a server looks for deliveries whose server died mid-attempt (default 30 000 ms). */
  stalledIntervalMs?: number;
  /** An attempt's lock (renewed while the server lives; default 60 000 ms): a dead server's attempt is retried after it. */
  lockMs?: number;
}

export class RedisOutbox implements WebhookOutbox {
  private readonly worker: BullWorker;
  private readonly sender: WebhookSender;
  private active = 0;

  constructor(sender: WebhookSender, opts: RedisOutboxOptions) {
    this.sender = sender;
    const schedule = opts.schedule;
    const processor = async (job: BullJob) => {
      const d = job.data as Delivery;
      this.active++;
      try {
        const out = await sender.attempt(d);
        const attempts = job.attemptsMade + 1;
        if (out.ok) {
          opts.log?.info({ reqId: d.request_id, webhookId: d.id, attempt: attempts, status: out.status }, 'webhook delivered');
          opts.onOutcome?.(d, 'delivered', attempts, out);
          return { status: out.status };
        }
        const why = out.error ?? `HTTP ${out.status}`;
        if (sender.aborted) throw new Error(`${why} (shutting down: the delivery waits on the queue)`);
        if (out.permanent || job.attemptsMade >= schedule.length) {
          opts.log?.warn({ reqId: d.request_id, webhookId: d.id, attempts, status: out.status, err: out.error }, 'webhook delivery gave up');
          opts.onOutcome?.(d, 'failed', attempts, out);
          throw new UnrecoverableError(why);
        }
        opts.log?.warn({ reqId: d.request_id, webhookId: d.id, attempt: attempts, status: out.status, err: out.error, retry_in_ms: schedule[job.attemptsMade] }, 'webhook attempt failed');
        throw new Error(why);
      } finally {
        this.active--;
      }
    };
    this.worker = new BullWorker(webhookQueueName(opts.prefix), processor, {
      connection: opts.connection,
      concurrency: opts.concurrency ?? 8,
      lockDuration: opts.lockMs ?? 60_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: 1000, // a server that dies mid-attempt must not make the delivery fail
      settings: { backoffStrategy: (attemptsMade: number) => schedule[Math.max(0, attemptsMade - 1)] ?? schedule.at(-1) ?? 0 },
    });
    this.worker.on('error', () => {}); // ioredis reconnects; deliveries wait in Redis meanwhile
  }

  get pendingCount(): number {
    return this.active;
  }

  kick(): void {}

  async flush(): Promise<void> {
    // Owed deliveries are in Redis; only attempts in flight are this process's.
    while (this.active > 0) await new Promise((r) => setTimeout(r, 20));
  }

  abortAll(): void {
    this.sender.abortAll();
    void withTimeout(this.worker.close(true), 2000);
  }

  async close(): Promise<void> {
    await withTimeout(this.worker.close(), 15_000);
  }
}
