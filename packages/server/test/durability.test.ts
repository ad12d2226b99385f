/**
 * Nothing accepted is lost: servers SIGKILLed with jobs queued and running and webhooks owed, then restarted, in the
 * embedded mode (the SQLite journal) and in the Redis mode (BullMQ). Real processes (processes/server-process.ts,
 * the server as `flux serve` builds it, with a slow test generator), real HTTP on 127.0.0.1, a real redis-server;
 * judged by what arrives, in what order, never by time. Every webhook is verified with the `standardwebhooks`
 * package, and a replay of one is detectable (same webhook-id, an old timestamp).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HAS_REDIS, startRedis, type RedisServer } from '../../../test/harness/redis-server.ts';
import { JournalError, SqliteJobStore, sqliteAvailable, startRedisWorker, webhookId, type JobStatus } from '../src/index.ts';
import { SCHNELL, SlowGenerator, getJson, postJson, start } from './helpers.ts';
import { webhookReceiver, type Hit } from './webhook-receiver.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const SECRET = `whsec_${Buffer.from('durability-test-secret-32-bytes!').toString('base64')}`;
const SQLITE = sqliteAvailable();
const NO_SQLITE = SQLITE.ok ? '' : `skipped: ${SQLITE.reason}`;
const dirs: string[] = [];
const procs: ChildProcess[] = [];

afterAll(() => {
  for (const p of procs) kill(p);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flux-durable-'));
  dirs.push(d);
  return d;
}

/** Starts processes/server-process.ts in a process group of its own; resolves with its base URL. */
async function spawnServer(cfg: Record<string, unknown>): Promise<{ proc: ChildProcess; url: string; exited: Promise<number | null> }> {
  // Node itself with tsx's loader, not the tsx command: that one relays SIGTERM to its child and, when the child has
  // not acknowledged within 30 ms (a loaded machine), SIGKILLs it and exits 143, which the graceful-stop checks read
  // as a failed drain.
  const proc = spawn(process.execPath, ['--import', 'tsx', 'packages/server/test/processes/server-process.ts', JSON.stringify(cfg)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  procs.push(proc);
  let out = '';
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /serving (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`server exited (${code}):\n${out}`)));
  });
  return { proc, url, exited };
}

/** SIGKILL to the whole process group (tsx and the node process it runs). */
function kill(p: ChildProcess) {
  try {
    process.kill(-p.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

const job = (extra: Record<string, unknown> = {}) => ({ prompt: 'a fox', width: 128, height: 128, num_inference_steps: 1, seed: 3, ...extra });
const ASYNC = { prefer: 'respond-async' };

async function waitForStatus(url: string, id: string, want: (s: JobStatus) => boolean): Promise<JobStatus> {
  for (;;) {
    const s = (await getJson(`${url}/v1/inference/requests/${id}`)) as JobStatus;
    if (want(s)) return s;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every 2xx-delivered message exactly once, signed (standardwebhooks), with the id its request and event give. */
function expectDeliveredOnce(delivered: Hit[], ids: string[]) {
  const wh = new Webhook(SECRET);
  const byId = new Map<string, number>();
  for (const h of delivered) byId.set(h.id, (byId.get(h.id) ?? 0) + 1);
  for (const id of ids) expect(byId.get(webhookId(id, 'completed')), `webhook of ${id}`).toBe(1);
  for (const h of delivered) {
    const payload = wh.verify(h.body, h.headers as Record<string, string>) as { request_id: string };
    expect(payload.request_id).toBe(h.requestId);
  }
}

describe.skipIf(!SQLITE.ok)(`embedded mode: the SQLite journal ${NO_SQLITE}`, () => {
  it('after a SIGKILL with jobs queued and running and a webhook owed, a restart runs every job and delivers every webhook exactly once', async () => {
    const journal = join(tempDir(), 'jobs.sqlite');
    const hook = await webhookReceiver();
    const cfg = { stepMs: 60, journal, secret: SECRET, retriesMs: [100, 100, 100, 100, 100, 100, 100, 100] };
    try {
      const s1 = await spawnServer(cfg);
      hook.state.failing = true; // the receiver is down: the first job's webhook stays owed
      const a = await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url }), ASYNC);
      expect(a.status).toBe(202);
      await hook.waitFor(() => hook.hits.some((h) => h.requestId === a.body.request_id));
      const b = await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url, num_inference_steps: 40 }), ASYNC);
      const queued: Awaited<ReturnType<typeof postJson>>[] = [];
      for (let i = 0; i < 3; i++) queued.push(await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url, seed: 10 + i }), ASYNC));
      const quiet = await postJson(`${s1.url}${SCHNELL}?async=true`, job({ seed: 99 })); // no webhook: only its status
      for (const r of [b, ...queued, quiet]) expect(r.status).toBe(202);
      await waitForStatus(s1.url, b.body.request_id, (s) => s.status === 'running' && (s.step ?? 0) >= 1);
      kill(s1.proc);
      await s1.exited;
      const before = hook.delivered().length;
      expect(before).toBe(0);

      hook.state.failing = false;
      const s2 = await spawnServer(cfg);
      const ids = [a, b, ...queued].map((r) => r.body.request_id as string);
      await hook.waitFor(() => new Set(hook.delivered().map((h) => h.requestId)).size === ids.length);
      // the job without a webhook ran too, and its result can be fetched from the restarted server
      const q = await waitForStatus(s2.url, quiet.body.request_id, (s) => s.status === 'succeeded');
      expect((q.result as { seed: number }).seed).toBe(99);
      // the interrupted job ran again (second attempt) and succeeded
      expect((await getJson(`${s2.url}/v1/inference/requests/${b.body.request_id}`)).status).toBe('succeeded');
      process.kill(-s2.proc.pid!, 'SIGTERM'); // a graceful stop: nothing more may arrive
      expect(await s2.exited).toBe(0);
      expectDeliveredOnce(hook.delivered(), ids);
      const bodies = hook.delivered().map((h) => JSON.parse(h.body) as { request_id: string; seed: number; inference_status: { status: string } });
      expect(bodies.every((x) => x.inference_status.status === 'succeeded')).toBe(true);
      expect(bodies.filter((x) => queued.some((r) => r.body.request_id === x.request_id)).map((x) => x.seed).sort()).toEqual([10, 11, 12]);

      // A replay of a captured webhook is detectable: the same webhook-id as before, and its timestamp is old.
      const captured = hook.delivered()[0]!;
      const wh = new Webhook(SECRET);
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 10 * 60_000 });
      try {
        expect(() => wh.verify(captured.body, captured.headers as Record<string, string>)).toThrow(/timestamp too old/i);
      } finally {
        vi.useRealTimers();
      }
      // ... and a fresh timestamp on the captured signature does not verify
      const forged = { ...(captured.headers as Record<string, string>), "webhook-timestamp": String(Math.floor(Date.now() / 1000)) };
      expect(() => wh.verify(captured.body, forged)).toThrow(/signature/i);
    } finally {
      await hook.close();
    }
  }, 90_000);

  it('fails a job interrupted as often as it is retried with `interrupted`, and delivers its webhook; refuses a second server on the same journal', async () => {
    const journal = join(tempDir(), 'jobs.sqlite');
    const hook = await webhookReceiver();
    const store = SqliteJobStore.open(journal);
    const request = { prompt: 'x', num_inference_steps: 1, guidance_scale: 1, strength: 1, width: 128, height: 128, seed: 1, num_images: 1, webhook: hook.url } as const;
    store.insert({ id: 'j1', data: { model: 'black-forest-labs/FLUX-1-schnell', request }, state: 'queued', attempts: 0, created_at: new Date().toISOString() });
    // two runs that crashed: started twice, never finished
    store.started('j1', new Date().toISOString(), []);
    store.started('j1', new Date().toISOString(), []);
    expect(() => SqliteJobStore.open(journal)).toThrow(JournalError); // held (here, by this process)
    store.close();

    const gen = new SlowGenerator(1);
    const { server, url } = await start({ generators: [gen], journal, allowPrivateWebhooks: true, webhookSecret: SECRET, maxAttempts: 2 });
    try {
      const s = (await getJson(`${url}/v1/inference/requests/j1`)) as JobStatus;
      expect(s.status).toBe('failed');
      expect(s.error).toMatchObject({ type: 'interrupted', message: expect.stringMatching(/stopped .* 2 times.*Resubmit/) });
      await hook.waitFor(() => hook.delivered().length === 1);
      expectDeliveredOnce(hook.delivered(), ['j1']);
      expect(JSON.parse(hook.delivered()[0]!.body)).toMatchObject({ request_id: 'j1', inference_status: { status: 'failed' }, error: { type: 'interrupted' } });
      expect(gen.seen).toHaveLength(0);
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/flux_jobs_total\{model="black-forest-labs\/FLUX-1-schnell",status="failed"\} 1/);
    } finally {
      await server.close();
      await hook.close();
    }
  });
});

describe.skipIf(!HAS_REDIS)('Redis mode: webhooks are BullMQ jobs', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('after a SIGKILL of the server with webhooks owed (one mid-retry), a restarted server delivers each exactly once', async () => {
    const prefix = `dur${process.pid}`;
    const hook = await webhookReceiver();
    const cfg = { stepMs: 1, redis: redis.url, prefix, secret: SECRET, retriesMs: [100, 100, 100, 100, 100, 100, 100, 100], webhookStalledMs: 300 };
    const gen = new SlowGenerator(40);
    const worker = await startRedisWorker({ url: redis.url, prefix, generators: [gen], lockDurationMs: 2000, stalledIntervalMs: 500 });
    try {
      const s1 = await spawnServer(cfg);
      hook.state.failing = true;
      const a = await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url }), ASYNC);
      expect(a.status).toBe(202);
      await hook.waitFor(() => hook.hits.some((h) => h.requestId === a.body.request_id)); // owed, retrying
      const b = await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url, num_inference_steps: 20 }), ASYNC);
      const c = await postJson(`${s1.url}${SCHNELL}`, job({ webhook: hook.url, seed: 7, webhook_events_filter: ['start', 'completed'] }), ASYNC);
      await waitForStatus(s1.url, b.body.request_id, (s) => s.status === 'running');
      kill(s1.proc);
      await s1.exited;
      expect(hook.delivered()).toHaveLength(0);

      // The worker finishes b and c while no server runs; their webhooks wait in Redis.
      hook.state.failing = false;
      await expect.poll(() => gen.seen.length, { timeout: 30_000 }).toBe(3);
      const s2 = await spawnServer(cfg);
      const ids = [a, b, c].map((r) => r.body.request_id as string);
      await hook.waitFor(() => new Set(hook.delivered().filter((h) => h.event === 'completed').map((h) => h.requestId)).size === 3 && hook.delivered().some((h) => h.event === 'start'));
      process.kill(-s2.proc.pid!, 'SIGTERM');
      expect(await s2.exited).toBe(0);
      expectDeliveredOnce(hook.delivered().filter((h) => h.event === 'completed'), ids);
      const starts = hook.delivered().filter((h) => h.event === 'start');
      expect(starts.map((h) => h.id)).toEqual([webhookId(c.body.request_id, 'start')]);
      expect(JSON.parse(starts[0]!.body)).toMatchObject({ event: 'start', inference_status: { status: 'running' } });
    } finally {
      await worker.close();
      await hook.close();
    }
  }, 90_000);
});
