/**
 * THE acceptance test: the tiny random FLUX pipeline of test/reference/gen_pipeline.py, run by diffusers
 * (FluxPipeline / FluxImg2ImgPipeline, float32, torch.Generator("cpu").manual_seed(seed)), and by this library
 * from the same saved folder with the same seeds must give the same PNG pixels: at least 99.9% of the values
 * identical and none off by more than 1 (float32 summation order differs between torch and tfjs, so a value
 * sitting on a .5 rounding boundary may flip). Intermediate results are checked too, to localise a failure.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { decodeImage, readPngText } from '../../src/image/index.ts';
import { diffusersLocation } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import { readGenerationMetadata } from '../../src/pipeline/metadata.ts';
import { pipelineCases, writeTinyDevBfl } from './helpers.ts';

const MODEL = fixturePath('pipeline', 'tiny-flux');
const cases = await pipelineCases();
const inputPng = await readFile(fixturePath('pipeline', 'input.png'));

function pixelAgreement(actual: Uint8Array, expected: ArrayLike<number>) {
  let same = 0;
  let maxDiff = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (d === 0) same++;
    if (d > maxDiff) maxDiff = d;
  }
  return { same: same / expected.length, maxDiff };
}

/**
 * The dev model as a diffusers folder found by model discovery: tiny-flux's components with tiny-flux-dev's
 * transformer and scheduler, under a name that says schnell (the variant must come from the weights' header).
 */
const devRoot = await mkdtemp(join(tmpdir(), 'flux-parity-'));
const DEV_FOLDER = join(devRoot, 'FLUX.1-schnell');
await mkdir(DEV_FOLDER);
for (const e of await readdir(MODEL)) {
  const from = e === 'transformer' || e === 'scheduler' ? fixturePath('pipeline', 'tiny-flux-dev', e) : join(MODEL, e);
  await symlink(from, join(DEV_FOLDER, e));
}

describe('tiny FLUX pipeline = diffusers, seed for seed', () => {
  // float32 is the seed-for-seed mode (bf16, the native backend's default, is judged in runtime/bf16.parity.test.ts)
  const schnell = new FluxPipeline(diffusersLocation(MODEL), { keepLoaded: false, precision: 'fp32' });
  const dev = FluxPipeline.load({ model: DEV_FOLDER, env: {} }, { precision: 'fp32' });
  afterAll(async () => {
    await schnell.dispose();
    await dev.dispose();
    await rm(devRoot, { recursive: true, force: true });
  });
  const pipe = schnell;

  it('finds the variant and scheduler in the folder', () => {
    expect(schnell.variant).toBe('schnell');
    expect(schnell.scheduler.use_dynamic_shifting).toBe(false);
    expect(schnell.scheduler.shift).toBe(1);
    expect(dev.variant).toBe('dev');
    expect(dev.defaults.max_sequence_length).toBe(512);
    expect(dev.scheduler).toMatchObject({ use_dynamic_shifting: true, shift: 3 });
  });

  for (const c of cases) {
    it(`${c.name}: ${c.kind} ${c.width}x${c.height}, ${c.steps} steps, seed ${c.seed}, ${c.num_images} image(s)`, async () => {
      const fx = await loadFixture('pipeline', `${c.name}.safetensors`);
      const pipe = c.model === 'tiny-flux-dev' ? dev : schnell;
      if (fx.prompt_embeds) {
        // prompt embeddings (T5 + CLIP pooled)
        const emb = await pipe.encodePrompt(c.prompt, c.max_sequence_length);
        const L = c.max_sequence_length;
        const D = emb.promptEmbedsShape[2];
        expect(emb.promptEmbedsShape).toEqual([1, L, D]);
        expectClose(emb.promptEmbeds, fx.prompt_embeds.data.slice(0, L * D), { relL2: 1e-5, label: `${c.name} prompt_embeds` });
        expectClose(emb.pooled, fx.pooled_prompt_embeds!.data.slice(0, emb.pooled.length), { relL2: 1e-5, label: `${c.name} pooled` });
      }

      const before = tf.memory().numTensors;
      const res = await pipe.generate({
        prompt: c.prompt,
        width: c.width,
        height: c.height,
        steps: c.steps,
        seed: c.seed,
        numImages: c.num_images,
        // dev: 512 is the variant's default, so leave it out there to test the default
        ...(c.model === 'tiny-flux-dev' ? { guidance: c.guidance } : { maxSequenceLength: c.max_sequence_length }),
        ...(c.kind === 'img2img' ? { image: inputPng, strength: c.strength } : {}),
      });
      expect(tf.memory().numTensors).toBe(before);

      expect(res.images).toHaveLength(c.num_images);
      const pixels = fx.pixels!.data;
      const per = c.width * c.height * 3;
      for (const [i, im] of res.images.entries()) {
        expect([im.width, im.height]).toEqual([c.width, c.height]);
        const { same, maxDiff } = pixelAgreement(im.rgb, pixels.subarray(i * per, (i + 1) * per));
        expect(maxDiff, `${c.name} image ${i}: largest pixel difference`).toBeLessThanOrEqual(1);
        expect(same, `${c.name} image ${i}: share of identical pixel values`).toBeGreaterThanOrEqual(0.999);
        // the PNG holds exactly these pixels and the parameters
        expect(Buffer.from(decodeImage(im.png).data).equals(Buffer.from(im.rgb))).toBe(true);
        const m = readGenerationMetadata(im.png);
        expect(m).toMatchObject({ prompt: c.prompt, seed: c.seed, steps: c.steps, width: c.width, height: c.height, index: i, max_sequence_length: c.max_sequence_length });
        expect(readPngText(im.png).parameters).toContain(`Seed: ${c.seed}`);
      }
      // float image before rounding
      const img = fx.image!.data;
      const ours = Float32Array.from(res.images.flatMap((im) => [...im.rgb]), (v) => v / 255);
      let worst = 0;
      for (let i = 0; i < img.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - img[i]!));
      expect(worst).toBeLessThanOrEqual(1 / 255 + 1e-6);
    });
  }

  it('the dev case from a BFL model.safetensors (found by discovery, dims from its header) gives the same pixels', async () => {
    const c = cases.find((x) => x.name === 'dev')!;
    const fx = await loadFixture('pipeline', 'dev.safetensors');
    const file = join(devRoot, 'bfl', 'model.safetensors');
    await mkdir(join(devRoot, 'bfl'));
    await writeTinyDevBfl(file, true);
    const bfl = FluxPipeline.load({ model: file, textEncoders: MODEL, vae: join(MODEL, 'vae'), env: {} }, { precision: 'fp32' });
    expect(bfl.variant).toBe('dev');
    expect(bfl.scheduler).toEqual(dev.scheduler); // MODEL_DEFAULTS.dev: the scheduler the dev folder ships
    const res = await bfl.generate({ prompt: c.prompt, width: c.width, height: c.height, steps: c.steps, seed: c.seed, guidance: c.guidance });
    expect(res.maxSequenceLength).toBe(c.max_sequence_length);
    const { same, maxDiff } = pixelAgreement(res.images[0]!.rgb, fx.pixels!.data);
    expect(maxDiff).toBeLessThanOrEqual(1);
    expect(same).toBeGreaterThanOrEqual(0.999);
  });

  it('denoiseLatents from the seed noise reproduces the final latents (stage API)', async () => {
    const c = cases.find((x) => x.name === 'astronaut')!;
    const fx = await loadFixture('pipeline', 'astronaut.safetensors');
    const { TorchGenerator, getSchedule, imageSeqLen, latentShape, packLatents } = await import('@flux-ts/core');
    const emb = await pipe.encodePrompt(c.prompt, c.max_sequence_length);
    const before = tf.memory().numTensors;
    const noise = new TorchGenerator(c.seed).randn(latentShape(c.width, c.height));
    const start = tf.tidy(() => packLatents(tf.tensor(noise, latentShape(c.width, c.height))));
    const out = await pipe.denoiseLatents({
      embeddings: emb, latents: start, width: c.width, height: c.height,
      sigmas: getSchedule(c.steps, imageSeqLen(c.width, c.height), pipe.scheduler),
    });
    expectClose(out, fx.latents!.data, { relL2: 1e-4, label: 'final packed latents' });
    tf.dispose([start, out]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
