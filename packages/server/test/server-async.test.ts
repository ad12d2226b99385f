/**
 * Asynchronous submission and the client's own request id, over real HTTP on 127.0.0.1: `Prefer: respond-async` and
 * `?async=true` answer 202 with the job's URLs and the job runs to the end with the client gone; a client may name a
 * synchronous job (X-Request-Id) to follow or cancel it from another connection; results are kept for
 * --result-ttl; a burst of 200 asynchronous requests loses none (with the journal when node:sqlite is there).
 * Judged by the order of events, never by time.
 */
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sqliteAvailable, type FluxServer, type JobStatus } from '../src/index.ts';
import { SCHNELL, SlowGenerator, getJson, postJson, readEvents, start } from './helpers.ts';

const TOKEN = 'async-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const servers: FluxServer[] = [];
const dir = mkdtempSync(join(tmpdir(), 'flux-async-'));
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function serve(opts: Partial<Parameters<typeof start>[0]> = {}, stepMs = 20) {
  const gen = new SlowGenerator(stepMs);
  const s = await start({ generators: [gen], tokens: [TOKEN], ...opts });
  servers.push(s.server);
  return { ...s, gen, port: Number(new URL(s.url).port) };
}

const job = (extra: Record<string, unknown> = {}) => ({ prompt: 'a heron', width: 128, height: 128, num_inference_steps: 3, seed: 11, ...extra });

async function until(url: string, id: string, want: (s: JobStatus) => boolean): Promise<JobStatus> {
  for (;;) {
    const s = (await getJson(`${url}/v1/inference/requests/${id}`, AUTH)) as JobStatus;
    if (want(s)) return s;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** POSTs on a raw socket, reads the head of the answer, and hangs up at once. */
function postAndHangUp(port: number, path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      const head = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(text)}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      sock.write(`${head.join('\r\n')}\r\n\r\n${text}`);
    });
    let data = '';
    sock.setEncoding('utf8');
    sock.on('error', reject);
    sock.on('data', (d) => {
      data += d;
      const split = data.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(data)?.[1];
      if (split < 0 || len === undefined || data.length < split + 4 + Number(len)) return;
      sock.destroy(); // the client is gone
      resolve({ status: Number(data.split(' ')[1]), body: JSON.parse(data.slice(split + 4, split + 4 + Number(len))) });
    });
  });
}

describe('asynchronous submission', () => {
  it('Prefer: respond-async -> 202 with the URLs; the job runs to the end with the client gone; poll and events give the result', async () => {
    const { url, port, gen } = await serve({}, 30);
    const r = await postAndHangUp(port, SCHNELL, job({ num_inference_steps: 8 }), { ...AUTH, Prefer: 'respond-async' });
    expect(r.status).toBe(202);
    const id = r.body.request_id as string;
    expect(r.body).toMatchObject({ status: 'queued', inference_status: { status: 'queued' } });
    expect(r.body.urls).toEqual({ get: `http://127.0.0.1/v1/inference/requests/${id}`, cancel: `http://127.0.0.1/v1/inference/requests/${id}`, events: `http://127.0.0.1/v1/inference/requests/${id}/events` });
    const ev = await readEvents(`${url}/v1/inference/requests/${id}/events`, AUTH, (t) => t === 'succeeded' || t === 'failed' || t === 'cancelled');
    expect(ev.events.at(-1)!.type).toBe('succeeded');
    const s = await getJson(`${url}/v1/inference/requests/${id}`, AUTH);
    expect(s).toMatchObject({ status: 'succeeded', step: 8, total_steps: 8, result: { request_id: id, seed: 11 } });
    expect(gen.aborted).toBe(0);
    expect(gen.stepsRun).toBe(8); // every step ran although the client hung up at once
  });

  it('?async=true does the same, with Location and Preference-Applied (a synchronous client that hangs up cancels its job: server-jobs.test.ts)', async () => {
    const { url } = await serve({}, 30);
    const res = await fetch(`${url}${SCHNELL}?async=true`, { method: 'POST', body: JSON.stringify(job()), headers: { ...AUTH, 'content-type': 'application/json' } });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { request_id: string };
    expect(res.headers.get('location')).toBe(`/v1/inference/requests/${body.request_id}`);
    expect(res.headers.get('preference-applied')).toBe('respond-async');
    expect((await until(url, body.request_id, (s) => s.status === 'succeeded')).result).toMatchObject({ seed: 11 });

  });

  it('a client names its synchronous job (X-Request-Id) and cancels it from another connection; bad and duplicate ids are refused', async () => {
    const { url, gen } = await serve({}, 30);
    const own = 'my-job_42';
    const sync = postJson(url + SCHNELL, job({ num_inference_steps: 200 }), { ...AUTH, 'x-request-id': own });
    const running = await until(url, own, (s) => s.status === 'running' && (s.step ?? 0) >= 2);
    expect(running.request_id).toBe(own);
    const del = await fetch(`${url}/v1/inference/requests/${own}`, { method: 'DELETE', headers: AUTH });
    expect(del.status).toBe(202);
    const answered = await sync;
    expect(answered.status).toBe(409);
    expect(answered.body).toMatchObject({ request_id: own, error: { type: 'cancelled' } });
    expect(answered.headers['x-request-id']).toBe(own);
    expect(gen.aborted).toBe(1);

    const again = await postJson(url + SCHNELL, job(), { ...AUTH, 'x-request-id': own });
    expect(again.status).toBe(409);
    expect(again.body.error.type).toBe('duplicate_request_id');
    for (const bad of ['has space', 'a'.repeat(65), 'semi;colon', '../x', 'ünï']) {
      const r = await fetch(url + SCHNELL, { method: 'POST', body: JSON.stringify(job()), headers: { ...AUTH, 'content-type': 'application/json', 'x-request-id': encodeURIComponent(bad) === bad ? bad : encodeURI(bad) } });
      const b = (await r.json()) as { error: { type: string; message: string } };
      expect(r.status, bad).toBe(400);
      expect(b.error.type).toBe('invalid_request_id');
      expect(b.error.message).toMatch(/X-Request-Id must be 1 to 64/);
    }
    expect(gen.seen).toHaveLength(1);
  });

  it('keeps a finished result for --result-ttl, then forgets it (404)', async () => {
    const { url } = await serve({ resultTtlS: 1 }, 1);
    const r = await postJson(`${url}${SCHNELL}?async=true`, job({ num_inference_steps: 1 }), AUTH);
    const done = await until(url, r.body.request_id, (s) => s.status === 'succeeded');
    expect(done.result).toMatchObject({ seed: 11 });
    const gone = await (async () => {
      for (;;) {
        const res = await fetch(`${url}/v1/inference/requests/${r.body.request_id}`, { headers: AUTH });
        if (res.status !== 200) return res;
        await new Promise((res2) => setTimeout(res2, 100));
      }
    })();
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as any).error.type).toBe('request_not_found');
  });
});

describe('load: a bounded burst of asynchronous requests', () => {
  it('accepts 200 concurrent asynchronous requests (202 each) and runs every one exactly once, none lost', async () => {
    const sqlite = sqliteAvailable().ok;
    const { url, gen } = await serve({ maxQueued: 256, ...(sqlite ? { journal: join(dir, 'burst.sqlite') } : {}) }, 0);
    const t0 = performance.now();
    const accepted = await Promise.all(Array.from({ length: 200 }, (_, i) => postJson(`${url}${SCHNELL}`, job({ seed: i, num_inference_steps: 1 }), { ...AUTH, prefer: 'respond-async' })));
    expect(accepted.map((r) => r.status)).toEqual(Array(200).fill(202));
    const ids = accepted.map((r) => r.body.request_id as string);
    expect(new Set(ids).size).toBe(200);
    const results = [];
    for (const id of ids) results.push(await until(url, id, (s) => s.status === 'succeeded' || s.status === 'failed'));
    expect(results.map((s) => (s.result as { seed: number }).seed)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(gen.seen).toHaveLength(200);
    console.log(`load (fake generator, ${sqlite ? 'journal' : 'memory'}): 200 async requests accepted and finished in ${(performance.now() - t0).toFixed(0)} ms`);
  });
});
