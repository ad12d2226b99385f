/**
 * Finding a model (model-location.ts) and the library-level behaviour of the pipeline beyond parity:
 * the Hugging Face cache layout (HF_HOME / HF_HUB_CACHE, repo ids), BFL single files, error messages,
 * abort, keepLoaded, and the PNG metadata fallbacks.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { encodePng } from '../../src/image/index.ts';
import { diffusersLocation, locateModel, ModelNotFoundError } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import { a1111Parameters, readGenerationMetadata, type GenerationMetadata } from '../../src/pipeline/metadata.ts';

const MODEL = fixturePath('pipeline', 'tiny-flux');
const SHA = '0123456789abcdef0123456789abcdef01234567';
let dir: string;

/** <hub>/models--black-forest-labs--FLUX.1-schnell/{refs/main, snapshots/<sha>/...} with links into tiny-flux. */
async function fakeHub(hub: string, repo = 'black-forest-labs/FLUX.1-schnell'): Promise<string> {
  const root = join(hub, `models--${repo.replace('/', '--')}`);
  const snap = join(root, 'snapshots', SHA);
  await mkdir(snap, { recursive: true });
  await mkdir(join(root, 'refs'), { recursive: true });
  await writeFile(join(root, 'refs', 'main'), SHA);
  for (const e of await readdir(MODEL)) await symlink(join(MODEL, e), join(snap, e));
  return snap;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-location-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('locateModel', () => {
  it('reads a diffusers folder: variant from transformer/config.json, scheduler from scheduler/', () => {
    const loc = locateModel({ model: MODEL, env: {} });
    expect(loc).toMatchObject({ layout: 'diffusers', variant: 'schnell', textEncoderRoot: MODEL, transformer: join(MODEL, 'transformer'), vae: join(MODEL, 'vae') });
    expect(loc.scheduler.shift).toBe(1);
  });

  it('finds FLUX.1-schnell in the HF cache under $HF_HOME/hub, or $HF_HUB_CACHE, when no model is given', async () => {
    const home = join(dir, 'hfhome');
    const snap = await fakeHub(join(home, 'hub'));
    expect(locateModel({ env: { HF_HOME: home } })).toMatchObject({ layout: 'hf-cache', name: 'black-forest-labs/FLUX.1-schnell', textEncoderRoot: snap });
    const cache = join(dir, 'hubcache');
    const snap2 = await fakeHub(cache);
    expect(locateModel({ env: { HF_HOME: home, HF_HUB_CACHE: cache } }).textEncoderRoot).toBe(snap2);
    // a repo id, a models--* folder and $FLUX_MODEL resolve too
    await fakeHub(cache, 'someone/tiny-flux');
    expect(locateModel({ model: 'someone/tiny-flux', env: { HF_HUB_CACHE: cache } }).layout).toBe('hf-cache');
    expect(locateModel({ model: join(cache, 'models--someone--tiny-flux'), env: {} }).textEncoderRoot).toContain(SHA);
    expect(locateModel({ env: { FLUX_MODEL: MODEL } }).layout).toBe('diffusers');
  });

  it('says where it looked and how to get the weights when nothing is found', () => {
    const env = { HF_HOME: join(dir, 'nothing') };
    expect(() => locateModel({ env })).toThrow(ModelNotFoundError);
    expect(() => locateModel({ env })).toThrow(/looked in .*nothing.*models--black-forest-labs--FLUX\.1-schnell.*pnpm flux download/);
    expect(() => locateModel({ model: 'nobody/nothing', env })).toThrow(/not in the Hugging Face cache.*pnpm flux download nobody\/nothing/);
    expect(() => locateModel({ model: join(dir, 'missing-folder'), env })).toThrow(/not found/);
  });

  it('BFL single files: ae.safetensors next to them, text encoders from a diffusers folder', async () => {
    const bfl = join(dir, 'bfl');
    await mkdir(bfl, { recursive: true });
    await writeFile(join(bfl, 'flux1-schnell.safetensors'), '');
    const env = { HF_HOME: join(dir, 'nothing') };
    expect(() => locateModel({ model: join(bfl, 'flux1-schnell.safetensors'), env })).toThrow(/autoencoder not found: .*ae\.safetensors/);
    await writeFile(join(bfl, 'ae.safetensors'), '');
    expect(() => locateModel({ model: join(bfl, 'flux1-schnell.safetensors'), env })).toThrow(/needs the text encoders.*--text-encoders/);
    const loc = locateModel({ model: bfl, textEncoders: MODEL, env });
    expect(loc).toMatchObject({ layout: 'bfl', variant: 'schnell', textEncoderRoot: MODEL, vae: join(bfl, 'ae.safetensors') });
    expect(loc.transformerConfig).toBeUndefined();
    await writeFile(join(bfl, 'flux1-dev.safetensors'), '');
    expect(locateModel({ model: join(bfl, 'flux1-dev.safetensors'), textEncoders: MODEL, env }).variant).toBe('dev');
  });

  it('names a missing component of a diffusers folder', async () => {
    const m = join(dir, 'partial');
    await mkdir(m, { recursive: true });
    for (const e of await readdir(MODEL)) if (e !== 'text_encoder_2') await symlink(join(MODEL, e), join(m, e));
    expect(() => locateModel({ model: m, env: {} })).toThrow(/component text_encoder_2\/ is missing/);
  });
});

describe('FluxPipeline (library behaviour)', () => {
  it('rejects bad options with one message each', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    await expect(pipe.generate({ prompt: 'x', width: 40, height: 32 })).rejects.toThrow(/width must be a multiple of 16/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 0 })).rejects.toThrow(/steps must be an integer/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, latents: new Float32Array(10) })).rejects.toThrow(/latents .* expected \[1, 16, 4, 4\]/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, image: new Uint8Array([1, 2, 3]) })).rejects.toThrow(/neither a PNG nor a JPEG/);
  });

  it('an aborted run stops between steps and leaks no tensors', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 4, seed: 1, signal: ac.signal, onStep: ({ step }) => { if (step === 2) ac.abort(); } }))
      .rejects.toThrow(/aborted after 2 of 4 steps/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keepLoaded gives the same image twice and dispose() frees every tensor', async () => {
    const before = tf.memory().numTensors;
    const pipe = new FluxPipeline(diffusersLocation(MODEL), { keepLoaded: true, transformer: 'resident', textEncoders: 'resident' });
    const a = await pipe.generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    const b = await pipe.generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    expect(Buffer.from(a.images[0]!.rgb).equals(Buffer.from(b.images[0]!.rgb))).toBe(true);
    expect(pipe.promptCache.hits).toBeGreaterThan(0);
    const streamed = await new FluxPipeline(diffusersLocation(MODEL)).generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    expect(Buffer.from(streamed.images[0]!.rgb).equals(Buffer.from(a.images[0]!.rgb))).toBe(true);
    expect(a.timings.stepMs).toHaveLength(2);
    await pipe.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('verify() names a corrupt component before anything runs', async () => {
    const m = join(dir, 'corrupt');
    await mkdir(join(m, 'vae'), { recursive: true });
    for (const e of await readdir(MODEL)) if (e !== 'vae') await symlink(join(MODEL, e), join(m, e));
    await writeFile(join(m, 'vae', 'config.json'), await readFile(join(MODEL, 'vae', 'config.json')));
    await writeFile(join(m, 'vae', 'diffusion_pytorch_model.safetensors'), 'not a safetensors file at all');
    await expect(new FluxPipeline(diffusersLocation(m)).verify()).rejects.toThrow(/vae.*diffusion_pytorch_model\.safetensors/);
  });
});

describe('PNG generation metadata', () => {
  const m: GenerationMetadata = {
    prompt: 'a cat, "quoted", 猫', seed: 42, steps: 4, guidance: 3.5, width: 512, height: 256, model: 'black-forest-labs/FLUX.1-schnell',
    variant: 'schnell', max_sequence_length: 256, num_images: 1, index: 0, version: '0.1.0',
  };
  const img = { width: 2, height: 2, data: new Uint8Array(12) };

  it('reads the JSON chunk back exactly', () => {
    expect(readGenerationMetadata(encodePng(img, { 'flux-ts': JSON.stringify(m), parameters: a1111Parameters(m) }))).toEqual(m);
  });

  it('falls back to the A1111 parameters chunk', () => {
    const got = readGenerationMetadata(encodePng(img, { parameters: a1111Parameters({ ...m, strength: 0.6 }) }));
    expect(got).toMatchObject({ prompt: m.prompt, seed: 42, steps: 4, width: 512, height: 256, guidance: 3.5, strength: 0.6 });
  });

  it('a PNG without parameters is a typed error', () => {
    expect(() => readGenerationMetadata(encodePng(img), 'x.png')).toThrow(/x\.png has no generation parameters/);
  });
});
