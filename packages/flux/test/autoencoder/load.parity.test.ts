/**
 * loadAutoEncoder (src/autoencoder/load.ts): a diffusers vae/ folder (dims from its config.json), a model root holding
 * vae/, a BFL-named single file, and single-file checkpoints with `first_stage_model.` / `vae.` prefixes, all through
 * the one validation. The tiny fixtures come from test/reference/gen_vae.py.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FluxError } from '@flux-ts/core';
import { compareArrays } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture, loadJsonFixture, type FixtureTensor } from '../../../../test/harness/fixtures.ts';
import { AutoEncoder, VaeWeightsError, type AutoEncoderParams } from '../../src/autoencoder/autoencoder.ts';
import { autoEncoderParamsFromDiffusers } from '../../src/autoencoder/config.ts';
import { loadAutoEncoder } from '../../src/autoencoder/load.ts';
import { detectFormat } from '../../src/weights/detect.ts';
import { writeSafetensors, type NamedTensor } from '../../src/weights/safetensors.ts';

let dir: string;
let params: AutoEncoderParams;
let bfl: Record<string, FixtureTensor>;
let z: tf.Tensor4D;
let expected: Float32Array;

function named(rec: Record<string, FixtureTensor>, prefix: string, extra: Record<string, NamedTensor> = {}): Record<string, NamedTensor> {
  const out: Record<string, NamedTensor> = { ...extra };
  for (const [k, t] of Object.entries(rec)) out[prefix + k] = { dtype: 'F32', shape: t.shape, data: t.data as Float32Array };
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-vae-load-'));
  params = autoEncoderParamsFromDiffusers(await loadJsonFixture('vae', 'vae-tiny.config.json'));
  bfl = await loadFixture('vae', 'vae-tiny.bfl.safetensors');
  const dec = await loadFixture('vae', 'decode.safetensors');
  z = tf.tensor4d(dec.z.data as Float32Array, dec.z.shape as [number, number, number, number]);
  expected = dec.image.data as Float32Array;
  // diffusers model root: <root>/vae/{config.json, diffusion_pytorch_model.safetensors}
  await mkdir(join(dir, 'root', 'vae'), { recursive: true });
  await copyFile(fixturePath('vae', 'vae-tiny.config.json'), join(dir, 'root', 'vae', 'config.json'));
  await copyFile(fixturePath('vae', 'vae-tiny.diffusers.safetensors'), join(dir, 'root', 'vae', 'diffusion_pytorch_model.safetensors'));
  const other = { 'model.diffusion_model.img_in.weight': { dtype: 'F32', shape: [2], data: new Float32Array(2) } as NamedTensor };
  await writeSafetensors(join(dir, 'ldm.safetensors'), named(bfl, 'first_stage_model.', other));
  await writeSafetensors(join(dir, 'vae-prefixed.safetensors'), named(bfl, 'vae.', other));
  await writeSafetensors(join(dir, 'broken.safetensors'), named(bfl, '', other));
});

afterAll(async () => {
  z?.dispose();
  await rm(dir, { recursive: true, force: true });
});

async function decodesLikeDiffusers(ae: AutoEncoder): Promise<void> {
  const img = ae.decode(z);
  expect(compareArrays(img.dataSync(), expected).relL2).toBeLessThan(1e-5);
  img.dispose();
  ae.dispose();
}

describe('loadAutoEncoder', () => {
  it('opens a diffusers model root (vae/ folder), dims from vae/config.json', async () => {
    const r = await loadAutoEncoder(join(dir, 'root'));
    expect(r.paramsSource).toBe(join(dir, 'root', 'vae', 'config.json'));
    expect(r.ae.params.ch).toBe(8);
    expect(r.prefix).toBe('');
    await decodesLikeDiffusers(r.ae);
    const r2 = await loadAutoEncoder(join(dir, 'root', 'vae', 'diffusion_pytorch_model.safetensors'));
    expect(r2.paramsSource).toBe(join(dir, 'root', 'vae', 'config.json'));
    await decodesLikeDiffusers(r2.ae);
  });

  it('opens a BFL-named file (dims given: a BFL file has no config) and strips first_stage_model. / vae. prefixes', async () => {
    const plain = await loadAutoEncoder(fixturePath('vae', 'vae-tiny.bfl.safetensors'), { params });
    expect(plain.paramsSource).toBe('options');
    await decodesLikeDiffusers(plain.ae);
    for (const [file, prefix] of [['ldm.safetensors', 'first_stage_model.'], ['vae-prefixed.safetensors', 'vae.']]) {
      const r = await loadAutoEncoder(join(dir, file), { params });
      expect(r.prefix).toBe(prefix);
      await decodesLikeDiffusers(r.ae);
    }
  });

  it('a BFL file without options gets the full FLUX dims, and the strict walk names what does not match', async () => {
    const err = await loadAutoEncoder(fixturePath('vae', 'vae-tiny.bfl.safetensors')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaeWeightsError);
    expect((err as Error).message).toMatch(/wrong shape: encoder\.conv_in\.weight is \[8, 3, 3, 3\], expected \[128, 3, 3, 3\]/);
    const err2 = await loadAutoEncoder(join(dir, 'broken.safetensors'), { params }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(VaeWeightsError);
    expect((err2 as Error).message).toContain('unexpected 1 key(s): model.diffusion_model.img_in.weight');
  });

  it('reports a missing path and a bad config.json as FluxErrors', async () => {
    await expect(loadAutoEncoder(join(dir, 'nope.safetensors'))).rejects.toBeInstanceOf(FluxError);
    await mkdir(join(dir, 'badcfg'), { recursive: true });
    await writeFile(join(dir, 'badcfg', 'config.json'), '{ not json');
    await copyFile(fixturePath('vae', 'vae-tiny.diffusers.safetensors'), join(dir, 'badcfg', 'diffusion_pytorch_model.safetensors'));
    const err = await loadAutoEncoder(join(dir, 'badcfg')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FluxError);
    expect((err as Error).message).toContain('config.json');
  });

  it('the prefix is the one the header shows the VAE keys under', () => {
    const keys = Object.keys(bfl);
    expect(detectFormat(keys.map((k) => `first_stage_model.${k}`)).prefix).toBe('first_stage_model.');
    expect(detectFormat([...keys.map((k) => `vae.${k}`), 'model.diffusion_model.img_in.weight']).prefix).toBe('vae.');
    expect(detectFormat(keys)).toEqual({ format: 'bfl-vae', prefix: '' });
  });
});
