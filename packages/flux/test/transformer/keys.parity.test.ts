/**
 * The BFL <-> diffusers key table (src/weights/transformer-keys.ts) against the pair of checkpoints that diffusers'
 * own converter produced (test/fixtures/transformer/*.{bfl,diffusers}.safetensors), the strict weight walk, and the
 * config invariants.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { FLUX_DEV, FLUX_SCHNELL } from '../../src/transformer/config.ts';
import { Flux, fluxParamSpec, fromDiffusersConfig } from '../../src/transformer/flux.ts';
import { TransformerWeightsError } from '../../src/weights/spec.ts';
import {
  detectTransformerFormat,
  toBflTransformerKeys,
  transformerKeyRules,
  TransformerKeyError,
} from '../../src/transformer/keys.ts';
import { CONFIGS, loadParams, loadWeights } from './helpers.ts';

describe.each(CONFIGS)('transformer keys (%s)', (name) => {
  it('diffusers weights convert to exactly the BFL weights', async () => {
    const p = await loadParams(name);
    const bfl = await loadWeights(name, 'bfl');
    const dif = await loadWeights(name, 'diffusers');
    expect(detectTransformerFormat(Object.keys(dif))).toBe('diffusers');
    expect(detectTransformerFormat(Object.keys(bfl))).toBe('bfl');
    const before = tf.memory().numTensors;
    const conv = toBflTransformerKeys(dif, p);
    // concat / swap make new tensors and dispose their sources; renames move: the count only shrinks
    expect(tf.memory().numTensors).toBeLessThan(before);
    expect(Object.keys(conv).sort()).toEqual(Object.keys(bfl).sort());
    expect(Object.keys(conv).sort()).toEqual(Object.keys(fluxParamSpec(p)).sort());
    for (const k of Object.keys(bfl)) {
      expect(conv[k]!.shape, k).toEqual(bfl[k]!.shape);
      expect(Array.from(conv[k]!.dataSync()), k).toEqual(Array.from(bfl[k]!.dataSync()));
    }
    tf.dispose([...Object.values(conv), ...Object.values(bfl)]);
  });

  it('strips the model.diffusion_model. prefix', async () => {
    const p = await loadParams(name);
    const bfl = await loadWeights(name, 'bfl');
    const prefixed = Object.fromEntries(Object.entries(bfl).map(([k, t]) => [`model.diffusion_model.${k}`, t]));
    expect(Object.keys(toBflTransformerKeys(prefixed, p)).sort()).toEqual(Object.keys(bfl).sort());
    tf.dispose(Object.values(bfl));
  });
});

describe('key table', () => {
  it('covers every parameter of full-size schnell and dev once', () => {
    for (const p of [FLUX_SCHNELL, FLUX_DEV]) {
      const rules = transformerKeyRules(p);
      const bfl = rules.map((r) => r.bfl);
      expect(new Set(bfl).size).toBe(bfl.length);
      expect(bfl.sort()).toEqual(Object.keys(fluxParamSpec(p)).sort());
      const dif = rules.flatMap((r) => r.diffusers);
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
      const rules = transformerKeyRules(p);
      expect(rules.map((r) => r.bfl).sort()).toEqual(Object.keys(bfl).sort());
      expect(rules.flatMap((r) => r.diffusers).sort()).toEqual(Object.keys(dif).sort());
    }
  });
});

describe('strict weight walk', () => {
  it('names missing, unexpected and mis-shaped BFL keys', async () => {
    const p = await loadParams('schnell-tiny');
    const w = await loadWeights('schnell-tiny', 'bfl');
    const dropped = w['double_blocks.1.img_attn.proj.bias']!;
    delete w['double_blocks.1.img_attn.proj.bias'];
    w['double_blocks.7.extra.weight'] = tf.zeros([2]);
    const badShape = w['final_layer.linear.weight']!;
    w['final_layer.linear.weight'] = tf.zeros([3, 64]);
    let err: unknown;
    try {
      Flux.fromTensors(p, w);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TransformerWeightsError);
    expect(err).toBeInstanceOf(FluxError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/missing 1 key\(s\): double_blocks\.1\.img_attn\.proj\.bias/);
    expect(msg).toMatch(/unexpected 1 key\(s\): double_blocks\.7\.extra\.weight/);
    expect(msg).toMatch(/final_layer\.linear\.weight is \[3, 64\], expected \[16, 64\]/);
    tf.dispose([dropped, badShape, ...Object.values(w)]);
  });

  it('names missing and unexpected diffusers keys', async () => {
    const p = await loadParams('dev-tiny');
    const w = await loadWeights('dev-tiny', 'diffusers');
    const gone = w['single_transformer_blocks.1.proj_mlp.weight']!;
    delete w['single_transformer_blocks.1.proj_mlp.weight'];
    expect(() => toBflTransformerKeys(w, p)).toThrow(TransformerKeyError);
    expect(() => toBflTransformerKeys(w, p)).toThrow(/missing 1 key\(s\): single_transformer_blocks\.1\.proj_mlp\.weight/);
    // a schnell config cannot read dev weights: the guidance embedder is unexpected
    w['single_transformer_blocks.1.proj_mlp.weight'] = gone;
    expect(() => toBflTransformerKeys(w, { ...p, guidanceEmbed: false })).toThrow(/unexpected 4 key\(s\): time_text_embed\.guidance_embedder/);
    tf.dispose(Object.values(w));
  });
});

describe('config', () => {
  it('reads a diffusers config.json', async () => {
    const p = fromDiffusersConfig(await loadJsonFixture('transformer', 'schnell-tiny.config.json'));
    expect(p).toMatchObject({
      inChannels: 16, outChannels: 16, vecInDim: 24, contextInDim: 32, hiddenSize: 64, mlpRatio: 4, numHeads: 4,
      depth: 2, depthSingleBlocks: 2, axesDim: [4, 6, 6], theta: 10000, qkvBias: true, guidanceEmbed: false,
    });
  });

  it('checks the invariants in the constructor', async () => {
    const p = await loadParams('schnell-tiny');
    const src = { get: async () => ({}) };
    expect(() => new Flux({ ...p, numHeads: 5 }, src)).toThrow(FluxError);
    expect(() => new Flux({ ...p, axesDim: [4, 6, 8] }, src)).toThrow(/sum to 18, but the head dim is 16/);
    expect(() => new Flux(p, src, { attentionHeadChunk: 0 })).toThrow(/attentionHeadChunk/);
  });
});
