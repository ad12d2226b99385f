/**
 * Step previews on the job's event stream (requests with `preview_every`) and the --any-size server flag, on real
 * HTTP with the real tiny pipeline on its generation thread.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreadedGenerator, type FluxServer } from '../src/index.ts';
import { SCHNELL, TINY_MODEL, pngSize, postJson, readEvents, start } from './helpers.ts';

const TOKEN = 'preview-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

let gen: ThreadedGenerator;
let server: FluxServer;
let url: string;
let wide: FluxServer;
let wideUrl: string;

beforeAll(async () => {
  gen = await ThreadedGenerator.open(TINY_MODEL);
  ({ server, url } = await start({ generators: [gen], tokens: [TOKEN] }));
  ({ server: wide, url: wideUrl } = await start({ generators: [gen], tokens: [TOKEN], anySize: true }));
});

afterAll(async () => {
  await wide?.close();
  await server?.close();
  await gen?.close();
});

describe('preview events', () => {
  it('a request with preview_every 2 gets a PNG preview right after every even step event, the last at step 8; none without it', async () => {
    const sub = await postJson(`${url}${SCHNELL}`, { prompt: 'a red barn', width: 128, height: 128, num_inference_steps: 8, seed: 1, preview_every: 2 }, { ...AUTH, prefer: 'respond-async' });
    expect(sub.status).toBe(202);
    const id = sub.body.request_id as string;
    const { events } = await readEvents(`${url}/v1/inference/requests/${id}/events`, AUTH, (t) => t === 'succeeded' || t === 'failed');
    expect(events.at(-1)!.type).toBe('succeeded');
    // (the stream may begin after the first steps: an async job does not wait for a listener)
    const seq = events.filter((e) => e.type === 'step' || e.type === 'preview');
    const previews = seq.filter((e) => e.type === 'preview');
    expect(previews.length).toBeGreaterThan(0);
    seq.forEach((e, i) => {
      if (e.type === 'preview') {
        expect(e.data.step % 2).toBe(0);
        expect(seq[i - 1]).toMatchObject({ type: 'step', data: { step: e.data.step } }); // right after its step
      } else if (e.data.step % 2 === 0) {
        expect(seq[i + 1]).toMatchObject({ type: 'preview', data: { step: e.data.step } });
      }
    });
    expect(previews.at(-1)!.data.step).toBe(8);
    const preview = previews.at(-1)!.data as { image: string; total_steps: number };
    expect(preview.total_steps).toBe(8);
    expect(preview.image).toMatch(/^data:image\/png;base64,/);
    expect(pngSize(preview.image)).toMatchObject({ width: 16, height: 16 }); // proj: the latent grid, 1/8 of 128

    const plain = await postJson(`${url}${SCHNELL}`, { prompt: 'a red barn', width: 128, height: 128, num_inference_steps: 2, seed: 1 }, { ...AUTH, prefer: 'respond-async' });
    const quiet = await readEvents(`${url}/v1/inference/requests/${plain.body.request_id}/events`, AUTH, (t) => t === 'succeeded' || t === 'failed');
    expect(quiet.events.some((e) => e.type === 'preview')).toBe(false);
  });

  it('refuses a bad preview_every with a 422 naming it', async () => {
    const r = await postJson(`${url}${SCHNELL}`, { prompt: 'x', preview_every: 0 }, AUTH);
    expect(r.status).toBe(422);
    expect(r.body.error.fields[0].field).toBe('preview_every');
  });
});

describe('--any-size', () => {
  it('keeps the seed API list by default and takes any multiple of 16 from 128 to 2048 with the flag', async () => {
    const body = { prompt: 'a wide landscape', width: 1344, height: 768, num_inference_steps: 1, seed: 2 };
    const refused = await postJson(`${url}${SCHNELL}`, body, AUTH);
    expect(refused.status).toBe(422);
    expect(refused.body.error.fields.map((f: { field: string }) => f.field)).toEqual(['width']);
    const ok = await postJson(`${wideUrl}${SCHNELL}`, body, AUTH);
    expect(ok.status).toBe(200);
    expect(pngSize(ok.body.images[0])).toMatchObject({ width: 1344, height: 768 });
    const odd = await postJson(`${wideUrl}${SCHNELL}`, { ...body, width: 1000 }, AUTH);
    expect(odd.status).toBe(422);
    expect(odd.body.error.fields[0]).toMatchObject({ field: 'width', allowed: 'a multiple of 16 from 128 to 2048' });
  });
});
