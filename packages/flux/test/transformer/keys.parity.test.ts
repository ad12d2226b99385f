/**
 * The BFL <- diffusers rename table (src/transformer/keys.ts) against the pair of checkpoints that diffusers' own
 * converter produced (test/fixtures/transformer/*.{bfl,diffusers}.safetensors) and the full-size key lists of the
 * real classes (test/fixtures/keys), the one validation of a checkpoint, and the config invariants.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { FLUX_DEV, FLUX_SCHNELL, fluxParamsFromDiffusers } from '../../src/transformer/config.ts';
import { Flux, fluxParamSpec } from '../../src/transformer/flux.ts';
import { transformerLayout, TransformerWeightsError } from '../../src/transformer/keys.ts';
import { openTransformerWeights } from '../../src/transformer/load.ts';
import { detectFormat } from '../../src/weights/detect.ts';
import { CONFIGS, fluxFromValues, loadParams, loadWeights, residentFlux } from './helpers.ts';

describe.each(CONFIGS)('transformer keys (%s)', (name) => {
  it('diffusers weights build exactly the BFL weights', async () => {
    const p = await loadParams(name);
    for (const format of ['bfl', 'diffusers'] as const) {
      const w = await loadWeights(name, format);
      expect(detectFormat(Object.keys(w)).format).toBe(`${format}-transformer`);
      tf.dispose(Object.values(w));
    }
    const a = await residentFlux(name, 'bfl', p);
    const b = await residentFlux(name, 'diffusers', p);
    const wa = a.weights.loaded('');
    const wb = b.weights.loaded('');
    expect(Object.keys(wb).sort()).toEqual(Object.keys(wa).sort());
    expect(Object.keys(wb).sort()).toEqual(Object.keys(fluxParamSpec(p)).sort());
    for (const k of Object.keys(wa)) {
      expect(wb[k]!.shape, k).toEqual(wa[k]!.shape);
      expect(Array.from(wb[k]!.dataSync()), k).toEqual(Array.from(wa[k]!.dataSync()));
    }
    a.dispose();
    b.dispose();
  });

  it('strips the model.diffusion_model. prefix', async () => {
    const p = await loadParams(name);
    const bfl = await loadWeights(name, 'bfl');
    const prefixed = Object.fromEntries(Object.entries(bfl).map(([k, t]) => [`model.diffusion_model.${k}`, t]));
    const flux = await fluxFromValues(p, prefixed);
    expect(flux.weights.prefix).toBe('model.diffusion_model.');
    expect(Object.keys(flux.weights.loaded('')).sort()).toEqual(Object.keys(bfl).sort());
    flux.dispose();
    tf.dispose(Object.values(bfl));
  });
});

describe('key table', () => {
  it('covers every parameter of full-size schnell and dev once', () => {
    for (const p of [FLUX_SCHNELL, FLUX_DEV]) {
      const rules = transformerLayout(p, 'diffusers-transformer').rules;
      const bfl = rules.map((r) => r.key);
      expect(new Set(bfl).size).toBe(bfl.length);
      expect(bfl.sort()).toEqual(Object.keys(fluxParamSpec(p)).sort());
      const dif = rules.flatMap((r) => r.from);
      expect(new Set(dif).size).toBe(dif.length);
    }
  });

  it('matches the key lists and shapes of the real checkpoints (test/fixtures/keys)', async () => {
    for (const [variant, p] of [['schnell', FLUX_SCHNELL], ['dev', FLUX_DEV]] as const) {
      type KeyList = { tensors: Record<string, number[]> };
      const bfl = (await loadJsonFixture<KeyList>('keys', `bfl-transformer-${variant}.json`)).tensors;
      const dif = (await loadJsonFixture<KeyList>('keys', `diffusers-transformer-${variant}.json`)).tensors;
      const spec = fluxParamSpec(p);
      expect(Object.keys(spec).sort()).toEqual(Object.keys(bfl).sort());
      for (const [k, shape] of Object.entries(bfl)) expect(spec[k], k).toEqual(shape);
      const rules = transformerLayout(p, 'diffusers-transformer').rules;
      expect(rules.map((r) => r.key).sort()).toEqual(Object.keys(bfl).sort());
      expect(rules.flatMap((r) => r.from).sort()).toEqual(Object.keys(dif).sort());
    }
  });
});

describe('strict validation', () => {
  it('names missing, unexpected and mis-shaped BFL keys', async () => {
    const p = await loadParams('schnell-tiny');
    const w = await loadWeights('schnell-tiny', 'bfl');
    const dropped = w['double_blocks.1.img_attn.proj.bias']!;
    delete w['double_blocks.1.img_attn.proj.bias'];
    w['double_blocks.7.extra.weight'] = tf.zeros([2]);
    const badShape = w['final_layer.linear.weight']!;
    w['final_layer.linear.weight'] = tf.zeros([3, 64]);
    const err = await fluxFromValues(p, w).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransformerWeightsError);
    expect(err).toBeInstanceOf(FluxError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/missing 1 key\(s\): double_blocks\.1\.img_attn\.proj\.bias/);
    expect(msg).toMatch(/unexpected 1 key\(s\): double_blocks\.7\.extra\.weight/);
    expect(msg).toMatch(/final_layer\.linear\.weight is \[3, 64\], expected \[16, 64\]/);
    tf.dispose([dropped, badShape, ...Object.values(w)]);
  });

  it('names missing, unexpected and mis-shaped diffusers keys, at open time', async () => {
    const p = await loadParams('dev-tiny');
    const w = await loadWeights('dev-tiny', 'diffusers');
    const gone = w['single_transformer_blocks.1.proj_mlp.weight']!;
    delete w['single_transformer_blocks.1.proj_mlp.weight'];
    await expect(fluxFromValues(p, w)).rejects.toThrow(TransformerWeightsError);
    await expect(fluxFromValues(p, w)).rejects.toThrow(/missing 1 key\(s\): single_transformer_blocks\.1\.proj_mlp\.weight/);
    // a schnell config cannot read dev weights: the guidance embedder is unexpected
    w['single_transformer_blocks.1.proj_mlp.weight'] = gone;
    await expect(fluxFromValues({ ...p, guidanceEmbed: false }, w)).rejects.toThrow(/unexpected 4 key\(s\): time_text_embed\.guidance_embedder/);
    // a diffusers q of the wrong width is named in the file's own terms, before any data is read
    const q = w['transformer_blocks.0.attn.to_q.weight']!;
    w['transformer_blocks.0.attn.to_q.weight'] = tf.zeros([q.shape[0]! + 1, q.shape[1]!]);
    await expect(fluxFromValues(p, w)).rejects.toThrow(/transformer_blocks\.0\.attn\.to_q\.weight is \[49, 48\], expected \[48, 48\]/);
    tf.dispose([q, ...Object.values(w)]);
  });
});

describe('config', () => {
  it('reads a diffusers config.json', async () => {
    const p = fluxParamsFromDiffusers(await loadJsonFixture('transformer', 'schnell-tiny.config.json'));
    expect(p).toMatchObject({
      inChannels: 16, outChannels: 16, vecInDim: 24, contextInDim: 32, hiddenSize: 64, mlpRatio: 4, numHeads: 4,
      depth: 2, depthSingleBlocks: 2, axesDim: [4, 6, 6], theta: 10000, qkvBias: true, guidanceEmbed: false,
    });
  });

  it('checks the invariants in the constructor', async () => {
    const p = await loadParams('schnell-tiny');
    const flux = await residentFlux('schnell-tiny', 'bfl', p);
    expect(() => new Flux({ ...p, numHeads: 5 }, flux.weights)).toThrow(FluxError);
    expect(() => new Flux({ ...p, axesDim: [4, 6, 8] }, flux.weights)).toThrow(/sum to 18, but the head dim is 16/);
    expect(() => new Flux(p, flux.weights, { attentionHeadChunk: 0 })).toThrow(/attentionHeadChunk/);
    expect(() => new Flux({ ...p, depth: 1 }, flux.weights)).toThrow(/opened for another transformer config/);
    flux.dispose();
  });

  it('opens a checkpoint whose format it detects, or refuses one of another model', async () => {
    const p = await loadParams('schnell-tiny');
    const vaeLike = new Map([['encoder.conv_in.weight', { dtype: 'F32' as const, shape: [8, 3, 3, 3] }], ['decoder.conv_in.weight', { dtype: 'F32' as const, shape: [8, 16, 3, 3] }]]);
    const reader = { path: 'ae.safetensors', files: [], tensors: vaeLike, readBytes: async () => new Uint8Array(0), readRange: async () => new Uint8Array(0) };
    expect(() => openTransformerWeights(reader, p)).toThrow(/holds no FLUX transformer weights \(its keys look like bfl-vae\)/);
  });
});
