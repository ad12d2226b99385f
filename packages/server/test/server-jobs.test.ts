/**
 * Jobs over real HTTP with a slow fake generator: 429 under a burst, status / cancel / server-sent events,
 * webhooks (signature, retry, SSRF refusal), graceful shutdown, the no-auth listen rule; and the pieces alone.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { InProcessJobQueue, ServerConfigError, TokenChecker, isLoopbackHost, isPrivateAddress, resolveWebhookTarget, type FluxServer } from '../src/index.ts';
import { SCHNELL, SlowGenerator, getJson, postJson, readEvents, start } from './helpers.ts';

const TOKEN = 'jobs-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const servers: FluxServer[] = [];
const receivers: http.Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const r of receivers.splice(0)) await new Promise((res) => r.close(res));
});

async function serve(opts: Partial<Parameters<typeof start>[0]> = {}, stepMs = 40) {
  const gen = new SlowGenerator(stepMs);
  const s = await start({ generators: [gen], tokens: [TOKEN], ...opts });
  servers.push(s.server);
  return { ...s, gen };
}

/** A local webhook receiver; `failFirst` answers 500 to the first N attempts. */
async function receiver(failFirst = 0) {
  const hits: { body: string; headers: http.IncomingHttpHeaders; answered: number }[] = [];
  let resolveNext: (() => void) | undefined;
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const answered = hits.length < failFirst ? 500 : 200;
      hits.push({ body, headers: req.headers, answered });
      res.writeHead(answered).end();
      if (answered === 200) resolveNext?.();
    });
  });
  receivers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const delivered = new Promise<void>((r) => (resolveNext = r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook`, hits, delivered };
}

const job = (extra: Record<string, unknown> = {}) => ({ prompt: 'a cat', width: 128, height: 128, num_inference_steps: 6, seed: 5, ...extra });

describe('queue', () => {
  it('runs one job at a time and answers a burst beyond the queue with 429 + Retry-After', async () => {
    const { url, gen } = await serve({ maxQueued: 2 });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => postJson(url + SCHNELL, job({ seed: i, num_inference_steps: 2 }), AUTH)));
    const codes = results.map((r) => r.status).sort();
    expect(codes).toEqual([200, 200, 200, 429, 429, 429, 429, 429]);
    for (const r of results.filter((x) => x.status === 429)) {
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(r.body.error.type).toBe('queue_full');
    }
    expect(gen.seen).toHaveLength(3);
  });

  it('with room for all, answers 100 concurrent requests 200 each, each with its own result, none lost', async () => {
    const { url, gen } = await serve({ maxQueued: 100 }, 1);
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => postJson(url + SCHNELL, job({ seed: i, num_inference_steps: 1 }), AUTH)));
    const wall = performance.now() - t0;
    expect(results.map((r) => r.status)).toEqual(Array(100).fill(200));
    expect(results.map((r) => r.body.seed)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(new Set(results.map((r) => r.body.request_id)).size).toBe(100);
    expect(gen.seen).toHaveLength(100);
    console.log(`load (fake generator, queue 100): 100 concurrent -> 100 x 200 in ${wall.toFixed(0)} ms`);
  });
});

describe('status, cancel and events', () => {
  it('reports a finished job with its steps and result; healthz shows the queue', async () => {
    const { url } = await serve({}, 60);
    const first = postJson(url + SCHNELL, job({ num_inference_steps: 8 }), AUTH);
    const second = postJson(url + SCHNELL, job({ num_inference_steps: 3 }), AUTH);
    await new Promise((r) => setTimeout(r, 200));
    const health = await getJson(`${url}/healthz`);
    expect(health).toMatchObject({ status: 'ok', models: ['black-forest-labs/FLUX-1-schnell'], running: 1, queue_depth: 1 });
    const r1 = await first;
    expect(r1.status).toBe(200);
    const id1 = r1.body.request_id;
    const s1 = await getJson(`${url}/v1/inference/requests/${id1}`, AUTH);
    expect(s1).toMatchObject({ request_id: id1, status: 'succeeded', step: 8, total_steps: 8 });
    expect(s1.result).toEqual(r1.body);
    expect((await second).status).toBe(200);
  });

  it('cancels the job of a synchronous client that disconnects', async () => {
    const { url, gen } = await serve({}, 40);
    const ac = new AbortController();
    const pending = fetch(url + SCHNELL, { method: 'POST', body: JSON.stringify(job({ num_inference_steps: 200 })), headers: { ...AUTH, 'content-type': 'application/json' }, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 200));
    ac.abort();
    await expect(pending).rejects.toThrow();
    for (let i = 0; i < 50 && !gen.aborted; i++) await new Promise((r) => setTimeout(r, 20));
    expect(gen.aborted).toBe(1);
    expect(gen.stepsRun).toBeLessThan(200);
    const m = await (await fetch(`${url}/metrics`)).text();
    expect(m).toMatch(/flux_jobs_total\{model="black-forest-labs\/FLUX-1-schnell",status="cancelled"\} 1/);
  });

  it('streams queued -> running -> step events and cancels a running job between steps', async () => {
    const hook = await receiver();
    const { url } = await serve({ allowPrivateWebhooks: true }, 60);
    const blocker = await postJson(url + SCHNELL, job({ num_inference_steps: 3, webhook: hook.url }), AUTH);
    const queued = await postJson(url + SCHNELL, job({ num_inference_steps: 40, webhook: hook.url }), AUTH);
    expect(queued.status).toBe(200);
    expect(queued.body.inference_status.status).toBe('queued');
    const id = queued.body.request_id;
    const s0 = await getJson(`${url}/v1/inference/requests/${id}`, AUTH);
    expect(s0).toMatchObject({ status: 'queued', queue_position: 1 });

    const events = readEvents(`${url}/v1/inference/requests/${id}/events`, AUTH, (t) => t === 'cancelled' || t === 'succeeded' || t === 'failed');
    // Wait until the job runs a few steps, then cancel it.
    for (let i = 0; i < 100; i++) {
      const s = await getJson(`${url}/v1/inference/requests/${id}`, AUTH);
      if (s.status === 'running' && s.step >= 3) {
        expect(s.total_steps).toBe(40);
        break;
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    const del = await fetch(`${url}/v1/inference/requests/${id}`, { method: 'DELETE', headers: AUTH });
    expect(del.status).toBe(202);
    expect(((await del.json()) as any).status).toBe('cancelling');
    const ev = await events;
    expect(ev.status).toBe(200);
    expect(ev.contentType).toBe('text/event-stream');
    const types = ev.events.map((e) => e.type);
    expect(types[0]).toBe('status');
    expect(types).toContain('running');
    expect(types.filter((t) => t === 'step').length).toBeGreaterThanOrEqual(3);
    expect(types.at(-1)).toBe('cancelled');
    const steps = ev.events.filter((e) => e.type === 'step').map((e) => e.data.step);
    expect(steps).toEqual(steps.map((_, i) => steps[0] + i)); // in order, none skipped
    expect(Math.max(...steps)).toBeLessThan(40); // stopped early
    const s2 = await getJson(`${url}/v1/inference/requests/${id}`, AUTH);
    expect(s2.status).toBe('cancelled');
    // Cancelling again: 409; unknown id: 404; the blocker finished normally.
    expect((await fetch(`${url}/v1/inference/requests/${id}`, { method: 'DELETE', headers: AUTH })).status).toBe(409);
    expect((await fetch(`${url}/v1/inference/requests/nope`, { headers: AUTH })).status).toBe(404);
    expect((await getJson(`${url}/v1/inference/requests/${blocker.body.request_id}`, AUTH)).status).toBe('succeeded');
    // The cancelled job's webhook says "failed".
    await hook.delivered;
    await servers[0]!.webhooks.flush();
    const bodies = hook.hits.map((h) => JSON.parse(h.body));
    expect(bodies.find((b) => b.request_id === id)).toMatchObject({ inference_status: { status: 'cancelled' }, error: { type: 'cancelled' } });
  });

  it('cancels a queued job at once', async () => {
    const hook = await receiver();
    const { url, gen } = await serve({ allowPrivateWebhooks: true }, 50);
    await postJson(url + SCHNELL, job({ num_inference_steps: 6, webhook: hook.url }), AUTH);
    const q = await postJson(url + SCHNELL, job({ webhook: hook.url }), AUTH);
    const del = await fetch(`${url}/v1/inference/requests/${q.body.request_id}`, { method: 'DELETE', headers: AUTH });
    expect(del.status).toBe(202);
    expect(((await del.json()) as any).status).toBe('cancelled');
    const ev = await readEvents(`${url}/v1/inference/requests/${q.body.request_id}/events`, AUTH, () => false);
    expect(ev.events.map((e) => e.type)).toEqual(['status', 'cancelled']);
    await servers[0]!.webhooks.flush();
    expect(gen.seen).toHaveLength(1);
  });
});

describe('webhooks', () => {
  it('answers at once with "queued", then POSTs the signed result, retrying after a failed attempt', async () => {
    const hook = await receiver(1);
    const secret = 'shh';
    const { url } = await serve({ allowPrivateWebhooks: true, webhookSecret: secret, webhookBackoffMs: 20 });
    const r = await postJson(url + SCHNELL, job({ num_inference_steps: 2, webhook: hook.url }), AUTH);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      request_id: expect.any(String),
      inference_status: { status: 'queued', runtime_ms: 0, cost: 0, tokens_generated: 0, tokens_input: 0 },
    });
    await hook.delivered;
    expect(hook.hits.map((h) => h.answered)).toEqual([500, 200]);
    const last = hook.hits[1]!;
    expect(last.headers['x-flux-signature']).toBe(`sha256=${createHmac('sha256', secret).update(last.body).digest('hex')}`);
    expect(hook.hits[0]!.body).toBe(last.body);
    expect(last.headers['x-request-id']).toBe(r.body.request_id);
    // Standard Webhooks too: a plain (not whsec_) secret is the key's UTF-8 bytes ("raw" for the verifiers); the
    // retry carries the same webhook-id as the first attempt
    expect(new Webhook(secret, { format: 'raw' }).verify(last.body, last.headers as Record<string, string>)).toMatchObject({ request_id: r.body.request_id });
    expect(last.headers['webhook-id']).toBe(`msg_completed_${r.body.request_id}`);
    expect(hook.hits[0]!.headers['webhook-id']).toBe(last.headers['webhook-id']);
    expect(last.headers['x-flux-event']).toBe('completed');
    const payload = JSON.parse(last.body);
    expect(payload).toMatchObject({ request_id: r.body.request_id, seed: 5, nsfw_content_detected: [false], inference_status: { status: 'succeeded', tokens_input: 3 } });
    expect(payload.images[0]).toMatch(/^data:image\/png;base64,/);
    const m = await (await fetch(`${url}/metrics`)).text();
    expect(m).toMatch(/flux_webhooks_total\{outcome="delivered"\} 1/);
  });

  it('refuses loopback, private, link-local and metadata webhook targets unless allowed', async () => {
    const { url, gen } = await serve();
    for (const hook of ['http://127.0.0.1:9/x', 'http://localhost/x', 'http://10.1.2.3/x', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/x', 'http://metadata.google.internal/x', 'http://192.168.0.1/', 'http://[::ffff:127.0.0.1]/']) {
      const r = await postJson(url + SCHNELL, job({ webhook: hook }), AUTH);
      expect(r.status, hook).toBe(422);
      expect(r.body.error.fields[0].field).toBe('webhook');
      expect(r.body.error.fields[0].message).toMatch(/refused|metadata/);
    }
    expect(gen.seen).toHaveLength(0);
  });

  it('resolves names before checking and pins the checked address', async () => {
    await expect(resolveWebhookTarget('http://localhost:1/x', false)).rejects.toThrow(/loopback/);
    await expect(resolveWebhookTarget('http://localhost:1/x', true)).resolves.toMatchObject({ address: expect.stringMatching(/^(127\.0\.0\.1|::1)$/) });
    await expect(resolveWebhookTarget('ftp://example.com/', true)).rejects.toThrow(/http/);
    await expect(resolveWebhookTarget('http://u:p@example.com/', true)).rejects.toThrow(/credentials/);
  });
});

describe('shutdown and listen rules', () => {
  it('finishes in-flight work and delivers pending webhooks before close resolves, refusing new work', async () => {
    const hook = await receiver();
    const { server, url } = await serve({ allowPrivateWebhooks: true }, 40);
    const a = await postJson(url + SCHNELL, job({ num_inference_steps: 5, webhook: hook.url }), AUTH);
    const b = await postJson(url + SCHNELL, job({ num_inference_steps: 5, webhook: hook.url }), AUTH);
    servers.splice(servers.indexOf(server), 1);
    const closed = server.close();
    await expect(postJson(url + SCHNELL, job(), AUTH)).rejects.toThrow(); // no longer listening
    await closed;
    const delivered = hook.hits.filter((h) => h.answered === 200).map((h) => JSON.parse(h.body));
    expect(delivered.map((d) => d.request_id).sort()).toEqual([a.body.request_id, b.body.request_id].sort());
    expect(delivered.every((d) => d.inference_status.status === 'succeeded')).toBe(true);
  });

  it('with shutdown "cancel", cancels queued and running jobs', async () => {
    const hook = await receiver();
    const { server, url, gen } = await serve({ allowPrivateWebhooks: true, shutdown: 'cancel' }, 40);
    await postJson(url + SCHNELL, job({ num_inference_steps: 100, webhook: hook.url }), AUTH);
    await postJson(url + SCHNELL, job({ num_inference_steps: 100, webhook: hook.url }), AUTH);
    await new Promise((r) => setTimeout(r, 100));
    servers.splice(servers.indexOf(server), 1);
    await server.close();
    const bodies = hook.hits.map((h) => JSON.parse(h.body));
    expect(bodies).toHaveLength(2);
    expect(bodies.every((b) => b.inference_status.status === 'cancelled' && b.error.type === 'cancelled')).toBe(true);
    expect(gen.seen.length).toBe(1);
  });

  it('refuses to listen on a non-loopback address without tokens unless noAuth', async () => {
    const { createServer } = await import('../src/index.ts');
    const s = await createServer({ generators: [new SlowGenerator()], logger: false, defaultMetrics: false });
    await expect(s.listen({ host: '0.0.0.0', port: 0 })).rejects.toBeInstanceOf(ServerConfigError);
    await s.close();
    const open = await createServer({ generators: [new SlowGenerator()], logger: false, defaultMetrics: false, noAuth: true });
    const u = await open.listen({ host: '0.0.0.0', port: 0 });
    expect(u).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    await open.close();
  });
});

describe('pieces', () => {
  it('classifies addresses', () => {
    for (const a of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:10.0.0.1', 'not-an-ip',
      // IPv4 inside IPv6: compatible (both spellings), RFC 6145, 6to4, Teredo, NAT64; and the rest of ::/8
      '::127.0.0.1', '::7f00:1', '::a9fe:a9fe', '::ffff:0:127.0.0.1', '::ffff:0:7f00:1', '2002:7f00:1::1', '2002:a9fe:a9fe::', '2001::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', '64:ff9b::7f00:1', '64:ff9b::8.8.8.8', '::2', '::ffff:169.254.169.254', 'fe80::1%eth0', '2001:db8::1', 'fec0::1', '255.255.255.255', '224.0.0.1', '198.18.0.1']) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(isPrivateAddress(a), a).toBe(false);
    expect(isLoopbackHost('127.0.0.1') && isLoopbackHost('localhost') && isLoopbackHost('::1') && isLoopbackHost('[::1]')).toBe(true);
    expect(isLoopbackHost('0.0.0.0') || isLoopbackHost('::') || isLoopbackHost('192.168.1.2')).toBe(false);
  });

  it('checks bearer tokens', () => {
    const t = new TokenChecker(['abc', 'def']);
    expect([t.check('bearer abc'), t.check('BEARER def'), t.check('Bearer  abc ')]).toEqual([true, true, true]);
    expect([t.check(undefined), t.check(''), t.check('abc'), t.check('bearer ab'), t.check('bearer abcd'), t.check('Basic abc')]).toEqual([false, false, false, false, false, false]);
    expect(new TokenChecker([]).enabled).toBe(false);
  });

  it('keeps FIFO order per model and runs models independently', async () => {
    const order: string[] = [];
    const q = new InProcessJobQueue({
      worker: async (id) => {
        order.push(`start ${id}`);
        await new Promise((r) => setTimeout(r, 10));
        order.push(`end ${id}`);
        return { id };
      },
      maxQueued: 5,
    });
    const req = { prompt: 'x', num_inference_steps: 1, guidance_scale: 1, strength: 1, width: 128, height: 128, seed: 1, num_images: 1 } as const;
    const jobs = ['a1', 'a2', 'a3'].map((id) => q.enqueue(id, { model: 'A', request: req }).done);
    const b = q.enqueue('b1', { model: 'B', request: req }).done;
    await Promise.all([...jobs, b]);
    const a = order.filter((s) => s.includes(' a'));
    expect(a).toEqual(['start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
    expect(order.indexOf('start b1')).toBeLessThan(order.indexOf('end a1')); // lanes run side by side
    await q.close();
    expect(() => q.enqueue('late', { model: 'A', request: req })).toThrow(/shutting down/);
  });
});
