/**
 * What a checkpoint is, from its header (src/weights/detect.ts): the format and prefix by key names, a transformer's
 * variant by its guidance embedder, and the checkpoint of one model found among several by their headers.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';
import { CLIP_L } from '../../src/clip/config.ts';
import { T5_XXL } from '../../src/t5/config.ts';
import { FLUX_DEV, FLUX_SCHNELL } from '../../src/transformer/config.ts';
import {
  bflTransformerArchitecture,
  bflVaeArchitecture,
  clipTextArchitecture,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  type Architecture,
} from '../../src/weights/architectures.ts';
import { detectFormat, locateWeights } from '../../src/weights/detect.ts';
import { writeSparseSafetensors } from '../../src/weights/safetensors.ts';

describe('detectFormat', () => {
  it('tells each format apart by key names', () => {
    const keys = (a: Architecture) => a.tensors.keys();
    expect(detectFormat(keys(bflTransformerArchitecture(FLUX_SCHNELL)))).toEqual({ format: 'bfl-transformer', variant: 'schnell', prefix: '' });
    expect(detectFormat(keys(diffusersTransformerArchitecture(FLUX_DEV)))).toEqual({ format: 'diffusers-transformer', variant: 'dev', prefix: '' });
    expect(detectFormat(keys(bflVaeArchitecture(FLUX_VAE))).format).toBe('bfl-vae');
    expect(detectFormat(keys(diffusersVaeArchitecture(FLUX_VAE))).format).toBe('diffusers-vae');
    expect(detectFormat(keys(t5EncoderArchitecture(T5_XXL))).format).toBe('t5-encoder');
    expect(detectFormat(keys(clipTextArchitecture(CLIP_L))).format).toBe('clip-text');
    expect(detectFormat([...keys(bflVaeArchitecture(FLUX_VAE))].map((k) => `first_stage_model.${k}`))).toEqual({ format: 'bfl-vae', prefix: 'first_stage_model.' });
    expect(detectFormat(['shared.weight'])).toEqual({ format: 'unknown', prefix: '' });
    expect(detectFormat([])).toEqual({ format: 'unknown', prefix: '' });
  });
});

describe('locateWeights', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flux-detect-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const sparse = (path: string, a: Architecture, prefix = '') =>
    writeSparseSafetensors(path, [...a.tensors].map(([name, shape]) => ({ name: prefix + name, dtype: 'BF16' as const, shape })));

  it('finds the checkpoint of a model among a folder\'s by their headers, whatever their names', async () => {
    const d = join(dir, 'mixed');
    await mkdir(d);
    await sparse(join(d, 'a.safetensors'), bflVaeArchitecture(FLUX_VAE), 'vae.');
    await sparse(join(d, 'b.safetensors'), bflTransformerArchitecture(FLUX_DEV), 'model.diffusion_model.');
    const t = locateWeights(d, 'transformer').location;
    expect(t).toEqual({ path: join(d, 'b.safetensors'), format: 'bfl-transformer', prefix: 'model.diffusion_model.', variant: 'dev' });
    expect(locateWeights(d, 'vae').location).toEqual({ path: join(d, 'a.safetensors'), format: 'bfl-vae', prefix: 'vae.' });
    expect(() => locateWeights(d, 't5')).toThrow(/holds no T5 encoder checkpoint\(s\) among its 2/);
    expect(() => locateWeights(join(d, 'a.safetensors'), 'clip')).toThrow(/a\.safetensors is not a CLIP text encoder checkpoint: its keys look like bfl-vae/);
  });
});
