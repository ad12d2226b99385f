/**
 * Scale-out on a REAL redis-server (started on a free loopback port by test/harness/redis-server.ts): the server
 * with `RedisJobQueue`, workers in-process (`startRedisWorker`), as the real `flux worker` command, and as worker
 * processes whose tiny pipeline is slowed down on its generation thread (processes/worker-process.ts), so a test can
 * SIGKILL one mid-job. Webhooks are checked with `standardwebhooks`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAS_REDIS, startRedis, type RedisServer } from '../../../test/harness/redis-server.ts';
import { Webhook } from 'standardwebhooks';
import { RedisJobQueue, startRedisWorker, webhookId, type FluxServer, type JobStatus, type RedisWorkerHandle } from '../src/index.ts';
import { SCHNELL, SlowGenerator, TINY_MODEL, getJson, postJson, pngSize, readEvents, start } from './helpers.ts';
import { webhookReceiver } from './webhook-receiver.ts';

const SECRET = `whsec_${Buffer.from('redis-test-secret-of-32-bytes!!!').toString('base64')}`;

const ROOT = new URL('../../../', import.meta.url).pathname;
let redis: RedisServer;
let prefixN = 0;
const nextPrefix = () => `t${process.pid}x${++prefixN}`;

async function startShared(url: string, prefix: string, extra: Record<string, unknown> = {}) {
  const q = await RedisJobQueue.connect({ url, prefix, maxQueued: 16, pollMs: 500, drainMs: 200, ...extra });
  const { server, url: base } = await start({
    generators: [new SlowGenerator(1)],
    queueFactory: (_w, onChange) => {
      q.onChange = onChange;
      return q;
    },
    allowPrivateWebhooks: true,
    webhookSecret: SECRET,
    webhookRetryScheduleMs: [100, 200, 400],
  });
  return { server, base, q };
}

/** A worker process: the slowed-down tiny pipeline (processes/worker-process.ts), or the real `flux worker` command. */
function spawnWorker(url: string, prefix: string, kind: 'slow' | 'cli' = 'slow') {
  const args =
    kind === 'cli'
      ? ['packages/cli/src/main.ts', 'worker', '--model', TINY_MODEL, '--redis', url, '--prefix', prefix, '--lock-ms', '2500', '--stalled-check-ms', '500', '--max-stalled', '1']
      : ['packages/server/test/processes/worker-process.ts', JSON.stringify({ url, prefix, model: TINY_MODEL, stepDelayMs: 300, lockMs: 2500, stalledMs: 500, maxStalled: 1 })];
  // detached: its own process group, so SIGKILL reaches tsx's node child too (tsx runs the script in a child)
  const proc = spawn(`${ROOT}node_modules/.bin/tsx`, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let log = '';
  const started: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    proc.stderr!.on('data', (d) => {
      log += String(d);
      for (const m of String(d).matchAll(/job (\S+) started/g)) started.push(m[1]!);
      if (log.includes(' ready:')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`worker exited (${code}):\n${log}`)));
  });
  return { proc, ready, started, log: () => log };
}

/** SIGKILL to the worker's whole process group (tsx and the node process running the worker). */
function kill(p: ChildProcess) {
  try {
    process.kill(-p.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

const body = (extra: Record<string, unknown> = {}) => ({ prompt: 'a red fox', width: 128, height: 128, num_inference_steps: 4, seed: 1, ...extra });

describe.skipIf(!HAS_REDIS)('shared Redis queue', () => {
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('runs sync jobs on an in-process worker with step events, cancel, and 429 when the shared queue is full', async () => {
    const prefix = nextPrefix();
    const { server, base } = await startShared(redis.url, prefix, { maxQueued: 3 });
    let worker: RedisWorkerHandle | undefined;
    try {
      // No worker yet: three jobs fill the queue (waiting), the fourth is refused.
      const pending = [1, 2, 3].map((i) => postJson(`${base}${SCHNELL}`, body({ seed: i })));
      await expect.poll(async () => (await getJson(`${base}/healthz`)).queue_depth, { timeout: 5000 }).toBe(3);
      const full = await postJson(`${base}${SCHNELL}`, body());
      expect(full.status).toBe(429);
      expect(full.headers['retry-after']).toMatch(/^\d+$/);
      expect(String(full.body.detail)).toMatch(/full/);

      // A worker drains them; each client gets its own result once.
      const gen = new SlowGenerator(30);
      worker = await startRedisWorker({ url: redis.url, prefix, generators: [gen], lockDurationMs: 2000, stalledIntervalMs: 1000 });
      const results = await Promise.all(pending);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(new Set(results.map((r) => r.body.request_id)).size).toBe(3);
      expect(results.map((r) => r.body.seed)).toEqual([1, 2, 3]);
      expect(pngSize(results[0]!.body.images[0]).width).toBe(1);
      expect(gen.seen.length).toBe(3);
      // the result stays in Redis for --result-ttl (any server answers GET with it), then expires
      const st = await getJson(`${base}/v1/inference/requests/${results[0]!.body.request_id}`);
      expect(st.status).toBe('succeeded');
      expect(st.result.seed).toBe(1);
      const ttl = await (server.queue as RedisJobQueue).redis.ttl(`${prefix}:result:${results[0]!.body.request_id}`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(3600);

      // SSE progress across processes' boundary (BullMQ progress -> QueueEvents), then cancel of a running job.
      const slow = postJson(`${base}${SCHNELL}`, body({ num_inference_steps: 40 }));
      let id = '';
      await expect.poll(async () => {
        const runningIds = await (server.queue as RedisJobQueue).queue.getActive();
        id = runningIds[0]?.id ?? '';
        return id;
      }, { timeout: 5000 }).not.toBe('');
      const ev = readEvents(`${base}/v1/inference/requests/${id}/events`, {}, (t) => t === 'cancelled' || t === 'succeeded' || t === 'failed');
      await expect.poll(async () => (await getJson(`${base}/v1/inference/requests/${id}`)).step ?? 0, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
      const del = await fetch(`${base}/v1/inference/requests/${id}`, { method: 'DELETE' });
      expect(del.status).toBe(202);
      const r = await slow;
      expect(r.status).toBe(409);
      const { events } = await ev;
      expect(events.some((e) => e.type === 'step')).toBe(true);
      expect(events.at(-1)!.type).toBe('cancelled');
      expect(gen.aborted).toBe(1);
      expect((await getJson(`${base}/v1/inference/requests/${id}`)).status).toBe('cancelled');
    } finally {
      await worker?.close();
      await server.close();
    }
  }, 30_000);

  it('keeps queued jobs across a server restart; a queued job can be cancelled; the `flux worker` command runs them', async () => {
    const prefix = nextPrefix();
    const hook = await webhookReceiver();
    let worker: ReturnType<typeof spawnWorker> | undefined;
    let s2: FluxServer | undefined;
    try {
      const s1 = await startShared(redis.url, prefix);
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await postJson(`${s1.base}${SCHNELL}`, body({ webhook: hook.url, seed: 10 + i }));
        expect(r.status).toBe(200);
        expect(r.body.inference_status.status).toBe('queued');
        ids.push(r.body.request_id);
      }
      expect((await getJson(`${s1.base}/v1/inference/requests/${ids[2]}`)).queue_position).toBe(2);
      await s1.server.close(); // no worker ran: the jobs stay in Redis

      const s2s = await startShared(redis.url, prefix);
      s2 = s2s.server;
      const st = await getJson(`${s2s.base}/v1/inference/requests/${ids[0]}`);
      expect(st.status).toBe('queued');
      const del = await fetch(`${s2s.base}/v1/inference/requests/${ids[1]}`, { method: 'DELETE' });
      expect(del.status).toBe(202);
      expect((await getJson(`${s2s.base}/v1/inference/requests/${ids[1]}`)).status).toBe('cancelled');

      worker = spawnWorker(redis.url, prefix, 'cli');
      await worker.ready;
      for (const id of [ids[0]!, ids[2]!]) {
        await expect.poll(async () => (await getJson(`${s2s.base}/v1/inference/requests/${id}`)).status, { timeout: 20_000 }).toBe('succeeded');
        const done: JobStatus = await getJson(`${s2s.base}/v1/inference/requests/${id}`);
        expect((done.result as { seed: number }).seed).toBe(id === ids[0] ? 10 : 12);
      }
      expect(worker.started.sort()).toEqual([ids[0], ids[2]].sort());
      // the restarted server delivered the webhooks of the first server's jobs (and the cancelled one's), once each
      await hook.waitFor(() => hook.delivered().length === 3);
      await s2.close();
      s2 = undefined;
      expect(hook.delivered().map((h) => h.id).sort()).toEqual(ids.map((id) => webhookId(id, 'completed')).sort());
      const bodies = hook.delivered().map((h) => new Webhook(SECRET).verify(h.body, h.headers as Record<string, string>) as { seed?: number; inference_status: { status: string } });
      expect(bodies.map((b) => b.seed ?? b.inference_status.status).sort()).toEqual([10, 12, 'cancelled']);
    } finally {
      if (worker) kill(worker.proc);
      await s2?.close();
      await hook.close();
    }
  }, 60_000);

  it('two worker processes share a burst; a worker SIGKILLed mid-job loses no work and no webhook (each delivered once); a job that loses its worker too often fails clearly', async () => {
    const prefix = nextPrefix();
    const { server, base } = await startShared(redis.url, prefix);
    const hook = await webhookReceiver();
    const w1 = spawnWorker(redis.url, prefix);
    const w2 = spawnWorker(redis.url, prefix);
    let w3: ReturnType<typeof spawnWorker> | undefined;
    try {
      await Promise.all([w1.ready, w2.ready]);
      const burst = [1, 2, 3, 4, 5, 6].map((i) => postJson(`${base}${SCHNELL}`, body({ seed: 100 + i })));
      const hooked = await Promise.all([1, 2, 3].map((i) => postJson(`${base}${SCHNELL}`, body({ seed: 200 + i, webhook: hook.url }), { prefer: 'respond-async' })));
      expect(hooked.map((r) => r.status)).toEqual([202, 202, 202]);
      await expect.poll(() => w1.started.length, { timeout: 15_000 }).toBeGreaterThan(0);
      const victim = w1.started.at(-1)!;
      kill(w1.proc);
      const results = await Promise.all(burst);
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(results.map((r) => r.body.seed)).toEqual([101, 102, 103, 104, 105, 106]);
      expect(new Set(results.map((r) => r.body.request_id)).size).toBe(6);
      for (const r of results) expect(pngSize(r.body.images[0]).width).toBe(128);
      // the killed worker's job was finished by the other one
      if (!w2.started.includes(victim)) console.log(`victim ${victim}\nw1:\n${w1.log()}\nw2:\n${w2.log()}`);
      expect(w2.started).toContain(victim);
      expect([...results, ...hooked].some((r) => r.body.request_id === victim)).toBe(true);
      await hook.waitFor(() => hook.delivered().length === 3);

      // maxStalledCount 1: a job whose worker dies twice fails with worker_lost (w2 runs the stalled check).
      kill(w2.proc);
      w3 = spawnWorker(redis.url, prefix);
      await w3.ready;
      // asynchronous, with the client's own id and a webhook: the failure is a status and a webhook
      const doomed = await postJson(`${base}${SCHNELL}`, body({ num_inference_steps: 10, webhook: hook.url }), { prefer: 'respond-async', 'x-request-id': `doomed-${prefix}` });
      expect(doomed.status).toBe(202);
      expect(doomed.body.request_id).toBe(`doomed-${prefix}`);
      // each worker is killed once it runs the doomed job itself (it may first finish another job that a killed
      // worker had already taken from the queue: BullMQ hands a worker its next job as it finishes one)
      const doomedId = `doomed-${prefix}`;
      await expect.poll(() => w3!.started.includes(doomedId), { timeout: 15_000 }).toBe(true);
      kill(w3.proc);
      const first = w3;
      const w4 = spawnWorker(redis.url, prefix);
      w3 = w4;
      await expect.poll(() => w4.started.includes(doomedId), { timeout: 20_000 }).toBe(true);
      kill(w4.proc);
      const w5 = spawnWorker(redis.url, prefix);
      w3 = w5;
      await hook.waitFor(() => hook.delivered().length === 4);
      const failed: JobStatus = await getJson(`${base}/v1/inference/requests/doomed-${prefix}`);
      if (failed.status !== 'failed') console.log(`doomed job ${JSON.stringify(failed).slice(0, 300)}\nw3:\n${first.log()}\nw4:\n${w4.log()}\nw5:\n${w5.log()}`);
      expect(failed.status).toBe('failed');
      expect(failed.error?.type).toBe('worker_lost');
      expect(String(failed.error?.message)).toMatch(/worker stopped/);
      expect(w5.started).not.toContain(doomedId);
      await server.close();
      // every webhook exactly once (the victim's too), signed; the lost job's says why
      const ids = [...hooked.map((r) => r.body.request_id as string), `doomed-${prefix}`];
      expect(hook.delivered().map((h) => h.id).sort()).toEqual(ids.map((id) => webhookId(id, 'completed')).sort());
      const lost = new Webhook(SECRET).verify(hook.delivered().at(-1)!.body, hook.delivered().at(-1)!.headers as Record<string, string>);
      expect(lost).toMatchObject({ request_id: `doomed-${prefix}`, inference_status: { status: 'failed' }, error: { type: 'worker_lost' } });
    } finally {
      kill(w1.proc);
      kill(w2.proc);
      if (w3) kill(w3.proc);
      await server.close();
      await hook.close();
    }
  }, 60_000);
});
