/**
 * The DeepInfra-compatible API over real HTTP on 127.0.0.1 with the real tiny FLUX pipeline
 * (test/fixtures/pipeline/tiny-flux): curl multipart, JSON, image-to-image, auth, 422, 413, OpenAI SDK, load.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreadedGenerator, type FluxServer } from '../src/index.ts';
import { SCHNELL, TINY_MODEL, curlForm, pngSize, postJson, start } from './helpers.ts';

const TOKEN = 'test-token-1';
const AUTH = { authorization: `bearer ${TOKEN}` };
const PROMPT = 'A photo of an astronaut riding a horse on Mars.';

let server: FluxServer;
let gen: ThreadedGenerator;
let url: string;
let dir: string;

beforeAll(async () => {
  gen = await ThreadedGenerator.open(TINY_MODEL); // as `pnpm flux serve` runs it: on a generation thread
  ({ server, url } = await start({ generators: [gen], tokens: [TOKEN, 'other-token'], maxQueued: 8, bodyLimit: 256 * 1024, uploadLimit: 64 * 1024 }));
  dir = await mkdtemp(join(tmpdir(), 'flux-server-'));
});

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('POST /v1/inference/black-forest-labs/FLUX-1-schnell', () => {
  it('answers a curl -F multipart request in the seed shape (the README command)', async () => {
    const r = await curlForm(url + SCHNELL, [['prompt', PROMPT], ['width', '128'], ['height', '128'], ['seed', '42']], AUTH);
    expect(r.status).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['images', 'inference_status', 'nsfw_content_detected', 'request_id', 'seed']);
    expect(r.body.images).toHaveLength(1);
    expect(r.body.images[0]).toMatch(/^data:image\/png;base64,/);
    expect(pngSize(r.body.images[0])).toMatchObject({ width: 128, height: 128 });
    expect(r.body.nsfw_content_detected).toEqual([false]);
    expect(r.body.seed).toBe(42);
    expect(r.body.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers['x-request-id']).toBe(r.body.request_id);
    const st = r.body.inference_status;
    expect(st.status).toBe('succeeded');
    expect(st.cost).toBe(0);
    expect(st.tokens_generated).toBe(0);
    expect(st.tokens_input).toBeGreaterThan(3); // prompt tokens (T5), specials included
    expect(Number.isInteger(st.runtime_ms) && st.runtime_ms >= 0).toBe(true);
  });

  it('answers JSON (the deepinfra client) seed for seed like multipart, and draws a seed when none is given', async () => {
    const body = { prompt: PROMPT, width: 128, height: 128, seed: 42, num_images: 2, num_inference_steps: 4 };
    const a = await postJson(url + SCHNELL, body, AUTH);
    const b = await curlForm(url + SCHNELL, [['prompt', PROMPT], ['width', '128'], ['height', '128'], ['seed', '42'], ['num_images', '2'], ['num_inference_steps', '4']], AUTH);
    expect(a.status).toBe(200);
    expect(a.body.images).toHaveLength(2);
    expect(a.body.nsfw_content_detected).toEqual([false, false]);
    expect(a.body.images).toEqual(b.body.images);
    expect(a.body.request_id).not.toBe(b.body.request_id);
    const c = await postJson(url + SCHNELL, { prompt: PROMPT, width: 128, height: 128, num_inference_steps: 1 }, AUTH);
    expect(c.status).toBe(200);
    expect(Number.isInteger(c.body.seed) && c.body.seed >= 0 && c.body.seed <= 0xffffffff).toBe(true);
  });

  it('does image-to-image from an uploaded file (-F image=@file.png) and from a JSON data URI', async () => {
    const src = await postJson(url + SCHNELL, { prompt: 'a red square', width: 128, height: 128, seed: 1, num_inference_steps: 2 }, AUTH);
    const png = pngSize(src.body.images[0]).bytes;
    const file = join(dir, 'in.png');
    await writeFile(file, png);
    const fields: [string, string][] = [['prompt', PROMPT], ['width', '128'], ['height', '128'], ['seed', '7'], ['strength', '0.5'], ['num_inference_steps', '4']];
    const up = await curlForm(url + SCHNELL, [...fields, ['image', `@${file}`]], AUTH);
    expect(up.status).toBe(200);
    expect(pngSize(up.body.images[0])).toMatchObject({ width: 128, height: 128 });
    const js = await postJson(url + SCHNELL, { prompt: PROMPT, width: 128, height: 128, seed: 7, strength: 0.5, num_inference_steps: 4, image: src.body.images[0] }, AUTH);
    expect(js.status).toBe(200);
    expect(js.body.images).toEqual(up.body.images);
    const t2i = await postJson(url + SCHNELL, { prompt: PROMPT, width: 128, height: 128, seed: 7, num_inference_steps: 4 }, AUTH);
    expect(t2i.body.images[0]).not.toEqual(up.body.images[0]); // the input image mattered
  });

  it('refuses missing or wrong tokens with 401 JSON; the bearer scheme is case-insensitive', async () => {
    const body = { prompt: PROMPT, width: 128, height: 128, num_inference_steps: 1 };
    for (const headers of [{}, { authorization: 'bearer nope' }, { authorization: `Basic ${TOKEN}` }, { authorization: TOKEN }, { authorization: 'bearer ' }] as Record<string, string>[]) {
      const r = await postJson(url + SCHNELL, body, headers);
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer');
      expect(r.body.error.type).toBe('unauthorized');
    }
    for (const authorization of [`BEARER ${TOKEN}`, `Bearer ${TOKEN}`, 'bearer other-token']) {
      expect((await postJson(url + SCHNELL, body, { authorization })).status).toBe(200);
    }
    expect((await fetch(`${url}/v1/inference/requests/x`)).status).toBe(401);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('answers 422 naming every bad field (JSON and form), and 404 for an unknown model', async () => {
    const j = await postJson(url + SCHNELL, { prompt: '  ', width: 100, height: 2048, num_inference_steps: 1.5, seed: -1, strength: 2, extra: 1 }, AUTH);
    expect(j.status).toBe(422);
    expect(j.body.error.fields.map((f: { field: string }) => f.field)).toEqual(['prompt', 'num_inference_steps', 'strength', 'width', 'height', 'seed', 'extra']);
    expect(j.body.detail.map((d: { loc: string[] }) => d.loc[1])).toEqual(['prompt', 'num_inference_steps', 'strength', 'width', 'height', 'seed', 'extra']);
    const f = await curlForm(url + SCHNELL, [['prompt', PROMPT], ['num_images', 'five'], ['guidance_scale', '99']], AUTH);
    expect(f.status).toBe(422);
    expect(f.body.error.fields.map((x: { field: string }) => x.field)).toEqual(['guidance_scale', 'num_images']);
    const img = await postJson(url + SCHNELL, { prompt: PROMPT, width: 128, height: 128, image: 'aGVsbG8gd29ybGQ=' }, AUTH);
    expect(img.status).toBe(422);
    expect(img.body.error.fields[0].field).toBe('image');
    const missing = await postJson(url + SCHNELL, {}, AUTH);
    expect(missing.status).toBe(422);
    expect(missing.body.error.fields[0]).toMatchObject({ field: 'prompt', message: 'is required' });
    const bad = await fetch(url + SCHNELL, { method: 'POST', body: '{"prompt": ', headers: { ...AUTH, 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error).toBeDefined();
    const dev = await postJson(`${url}/v1/inference/black-forest-labs/FLUX-1-dev`, { prompt: PROMPT }, AUTH);
    expect(dev.status).toBe(404);
    expect(dev.body.error.type).toBe('model_not_found');
    expect(dev.body.error.message).toContain('black-forest-labs/FLUX-1-schnell');
  });

  it('answers 413 for a body or an upload over the limits', async () => {
    const big = await postJson(url + SCHNELL, { prompt: PROMPT, image: 'A'.repeat(300 * 1024) }, AUTH);
    expect(big.status).toBe(413);
    expect(big.body.error.type).toBe('payload_too_large');
    const file = join(dir, 'big.png');
    await writeFile(file, Buffer.alloc(100 * 1024, 1));
    const up = await curlForm(url + SCHNELL, [['prompt', PROMPT], ['image', `@${file}`]], AUTH);
    expect(up.status).toBe(413);
    expect(up.body.error.type).toBe('payload_too_large');
    const text = join(dir, 'prompt.txt');
    await writeFile(text, 'x'.repeat(300 * 1024));
    const field = await curlForm(url + SCHNELL, [['prompt', `<${text}`]], AUTH);
    expect(field.status).toBe(413);
  });
});

describe('memory', () => {
  it("does not grow the generation thread's tensor count from one request to the next", async () => {
    const body = { prompt: PROMPT, width: 128, height: 128, num_inference_steps: 2, seed: 3 };
    expect((await postJson(url + SCHNELL, body, AUTH)).status).toBe(200);
    const before = (await gen.memory())!.numTensors;
    expect(before).toBeGreaterThan(0); // the kept-loaded models
    for (let i = 0; i < 2; i++) expect((await postJson(url + SCHNELL, { ...body, seed: i }, AUTH)).status).toBe(200);
    expect((await gen.memory())!.numTensors).toBe(before);
  });
});

describe('POST /v1/openai/images/generations', () => {
  it('works through the openai npm SDK', async () => {
    const client = new OpenAI({ apiKey: TOKEN, baseURL: `${url}/v1/openai`, maxRetries: 0 });
    const res = await client.images.generate({
      model: 'black-forest-labs/FLUX-1-schnell',
      prompt: PROMPT,
      n: 2,
      size: '128x128' as '256x256',
      response_format: 'b64_json',
    });
    expect(typeof res.created).toBe('number');
    expect(res.data).toHaveLength(2);
    for (const d of res.data!) expect(pngSize(d.b64_json!)).toMatchObject({ width: 128, height: 128 });
    await expect(client.images.generate({ model: 'black-forest-labs/FLUX-1-schnell', prompt: PROMPT, size: '100x100' as '256x256' })).rejects.toMatchObject({
      status: 400,
      error: { type: 'invalid_request_error', param: 'size' },
    });
    await expect(client.images.generate({ model: 'dall-e-3', prompt: PROMPT })).rejects.toMatchObject({ status: 404 });
    const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${url}/v1/openai`, maxRetries: 0 });
    await expect(bad.images.generate({ prompt: PROMPT })).rejects.toMatchObject({ status: 401, error: { type: 'invalid_request_error' } });
  });

  it("lists the models, echoes revised_prompt, ignores quality/style, and uses the model's defaults (schnell: 4 steps)", async () => {
    const client = new OpenAI({ apiKey: TOKEN, baseURL: `${url}/v1/openai`, maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['black-forest-labs/FLUX-1-schnell']);
    expect(models.data[0]).toMatchObject({ object: 'model', owned_by: 'black-forest-labs' });
    const { data: res, response } = await client.images
      .generate({ model: 'FLUX.1-schnell', prompt: PROMPT, size: '128x128' as '256x256', quality: 'hd', style: 'vivid', response_format: 'b64_json' })
      .withResponse();
    expect(res.data![0]!.revised_prompt).toBe(PROMPT);
    const id = response.headers.get('x-request-id')!;
    const st = await (await fetch(`${url}/v1/inference/requests/${id}`, { headers: AUTH })).json();
    expect(st).toMatchObject({ status: 'succeeded', total_steps: 4 }); // the DeepInfra route would take 25
  });
});

describe('POST /v1/openai/images/edits', () => {
  it('does image-to-image from an uploaded file through the openai SDK, with the model defaults', async () => {
    const client = new OpenAI({ apiKey: TOKEN, baseURL: `${url}/v1/openai`, maxRetries: 0 });
    const src = await postJson(url + SCHNELL, { prompt: 'a red square', width: 128, height: 128, seed: 1, num_inference_steps: 2 }, AUTH);
    const png = pngSize(src.body.images[0]).bytes;
    const edit = async (extra: Record<string, unknown> = {}) =>
      client.images
        .edit({ image: await toFile(png, 'in.png', { type: 'image/png' }), prompt: PROMPT, size: '128x128' as '256x256', ...extra, seed: 7, strength: 0.6 } as never)
        .withResponse();
    const { data: res, response } = await edit();
    expect(res.data).toHaveLength(1);
    expect(pngSize(res.data![0]!.b64_json!)).toMatchObject({ width: 128, height: 128 });
    expect(res.data![0]!.revised_prompt).toBe(PROMPT);
    const st = (await (await fetch(`${url}/v1/inference/requests/${response.headers.get('x-request-id')}`, { headers: AUTH })).json()) as { status: string; total_steps: number };
    expect(st.status).toBe('succeeded');
    // strength 0.6 of the model's 4 steps runs at most 4 (of the DeepInfra route's 25 it would run 15)
    expect(st.total_steps).toBeGreaterThan(0);
    expect(st.total_steps).toBeLessThanOrEqual(4);
    // the input image mattered: the same seed without it is another image
    const t2i = await client.images.generate({ prompt: PROMPT, size: '128x128' as '256x256', seed: 7 } as never);
    expect((t2i as { data: { b64_json: string }[] }).data[0]!.b64_json).not.toBe(res.data![0]!.b64_json);
    // no image, a mask: 400 naming the field
    const form = new FormData();
    form.append('prompt', PROMPT);
    const none = await fetch(`${url}/v1/openai/images/edits`, { method: 'POST', body: form, headers: AUTH });
    expect(none.status).toBe(400);
    expect(((await none.json()) as any).error).toMatchObject({ type: 'invalid_request_error', param: 'image' });
    await expect(edit({ mask: await toFile(png, 'mask.png', { type: 'image/png' }) })).rejects.toMatchObject({ status: 400, error: { param: 'mask' } });
  });
});

describe('load', () => {
  it('answers 100 concurrent requests each with 200 or 429 (Retry-After), none lost, no 5xx', async () => {
    const n = 100;
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        postJson(url + SCHNELL, { prompt: `load ${i}`, width: 128, height: 128, num_inference_steps: 1, seed: i }, AUTH).then((r) => ({ ...r, ms: performance.now() - t0 })),
      ),
    );
    const wall = performance.now() - t0;
    const ok = results.filter((r) => r.status === 200);
    const busy = results.filter((r) => r.status === 429);
    expect(ok.length + busy.length).toBe(n);
    expect(ok.length).toBeGreaterThanOrEqual(9); // 1 running + 8 waiting were admitted at least
    for (const r of busy) expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    for (const r of ok) expect(r.body.inference_status.status).toBe('succeeded');
    expect(new Set(ok.map((r) => r.body.request_id)).size).toBe(ok.length);
    const okMs = ok.map((r) => r.ms).sort((a, b) => a - b);
    console.log(
      `load: ${n} concurrent -> ${ok.length} x 200, ${busy.length} x 429, 0 other; wall ${wall.toFixed(0)} ms; ` +
        `200 latency p50 ${okMs[Math.floor(okMs.length / 2)]!.toFixed(0)} ms, max ${okMs[okMs.length - 1]!.toFixed(0)} ms; ` +
        `429 max ${Math.max(...busy.map((r) => r.ms)).toFixed(0)} ms`,
    );
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/flux_queue_depth\{model="black-forest-labs\/FLUX-1-schnell"\} 0/);
    expect(metrics).toMatch(/flux_jobs_total\{model="black-forest-labs\/FLUX-1-schnell",status="succeeded"\} \d+/);
    expect(metrics).toMatch(/flux_job_runtime_seconds_count\{model="black-forest-labs\/FLUX-1-schnell"\} \d+/);
    expect(metrics).toMatch(/flux_http_responses_total\{route="\/v1\/inference\/:owner\/:name",code="429"\} \d+/);
  });
});
