/**
 * Whole-model parity: our Flux vs BFL's Flux and diffusers' FluxTransformer2DModel on two tiny random configs
 * (test/reference/gen_transformer.py), from either checkpoint layout. fp32 everywhere: relative L2 <= 1e-5.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { Flux, FluxInputError, type FluxInputs } from '../../src/transformer/flux.ts';
import { loadFixture } from '../../../../test/harness/fixtures.ts';
import { openTransformerWeights } from '../../src/transformer/load.ts';
import { CheckpointWeights } from '../../src/weights/checkpoint-weights.ts';
import { memoryCheckpoint } from '../../src/weights/checkpoint.ts';
import type { Weights } from '../../src/weights/spec.ts';
import { CONFIGS, loadIo, loadParams, residentFlux, toTensors, type Fixture } from './helpers.ts';

const TOL = 1e-5;

function inputs(t: Record<string, tf.Tensor>): FluxInputs {
  return { img: t.img!, img_ids: t.img_ids!, txt: t.txt!, txt_ids: t.txt_ids!, timesteps: t.timesteps!, y: t.y!, guidance: t.guidance };
}

beforeAll(async () => {
  await tf.ready();
});

describe.each(CONFIGS)('Flux %s', (name) => {
  let io: Fixture;
  beforeAll(async () => {
    io = await loadIo(name);
  });

  for (const format of ['bfl', 'diffusers'] as const) {
    it(`matches BFL Flux and diffusers from ${format} weights, without leaking tensors`, async () => {
      const params = await loadParams(name);
      const flux = await residentFlux(name, format, params);
      const x = toTensors(io);
      const before = tf.memory().numTensors;
      const out = await flux.forward(inputs(x));
      expect(out.shape).toEqual(io.out_bfl!.shape);
      expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} (${format} weights) vs BFL` });
      expectClose(out, io.out_diffusers!.data as Float32Array, { relL2: TOL, label: `${name} (${format} weights) vs diffusers` });
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(Object.values(x));
      flux.dispose();
    });
  }

  it('gives the same output from both weight layouts', async () => {
    const params = await loadParams(name);
    const a = await residentFlux(name, 'bfl', params);
    const b = await residentFlux(name, 'diffusers', params);
    const x = toTensors(io);
    const oa = await a.forward(inputs(x));
    const ob = await b.forward(inputs(x));
    expect(Array.from(ob.dataSync())).toEqual(Array.from(oa.dataSync()));
    tf.dispose([oa, ob, ...Object.values(x)]);
    a.dispose();
    b.dispose();
  });

  it('gives the same result with attention run in head chunks', async () => {
    const params = await loadParams(name);
    const whole = await residentFlux(name, 'bfl', params);
    const x = toTensors(io);
    const ref = await whole.forward(inputs(x));
    for (const chunk of [1, 2]) {
      const chunked = new Flux(params, whole.weights, { attentionHeadChunk: chunk });
      const out = await chunked.forward(inputs(x));
      expectClose(out, ref.dataSync(), { relL2: 1e-6, label: `${name} head chunk ${chunk} vs whole` });
      expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} head chunk ${chunk} vs BFL` });
      out.dispose();
    }
    tf.dispose([ref, ...Object.values(x)]);
    whole.dispose();
  });
});

/** Streamed weights over host arrays that count the module fetches and the weight tensors alive. */
class CountingWeights extends CheckpointWeights {
  readonly calls: string[] = [];
  peak = 0;
  private live = 0;
  override async get(prefix: string): Promise<Weights> {
    this.calls.push(prefix);
    const w = await super.get(prefix);
    this.live += Object.keys(w).length;
    this.peak = Math.max(this.peak, this.live);
    return w;
  }
  override release(prefix: string, w: Weights): void {
    this.live -= Object.keys(w).length;
    super.release(prefix, w);
  }
}

describe('Flux with weights streamed per module', () => {
  it.each(CONFIGS)('%s: fetches each module just before use, frees it after, same output', async (name) => {
    const params = await loadParams(name);
    const arrays = (await loadFixture('transformer', `${name}.bfl.safetensors`)) as Fixture;
    const reader = memoryCheckpoint(Object.entries(arrays).map(([k, v]) => [k, { data: v.data as Float32Array, shape: v.shape }]));
    const src = new CountingWeights(reader, openTransformerWeights(reader, params).layout, { residency: 'streamed', prefetch: false });
    const flux = new Flux(params, src);
    const io = await loadIo(name);
    const x = toTensors(io);
    const before = tf.memory().numTensors;
    const out = await flux.forward(inputs(x));
    expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} streamed vs BFL` });
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const blocks = [
      ...Array.from({ length: params.depth }, (_, i) => `double_blocks.${i}.`),
      ...Array.from({ length: params.depthSingleBlocks }, (_, i) => `single_blocks.${i}.`),
    ];
    expect(src.calls).toEqual([
      'img_in.', 'time_in.', ...(params.guidanceEmbed ? ['guidance_in.'] : []), 'vector_in.', 'txt_in.', ...blocks, 'final_layer.',
    ]);
    // never more than one module's weights alive at once (a double block has the most tensors: 36)
    expect(src.peak).toBeLessThanOrEqual(36);
    tf.dispose(Object.values(x));
  });
});

describe('Flux inputs', () => {
  it('requires guidance for a guidance-distilled (dev) model, with a typed error', async () => {
    const flux = await residentFlux('dev-tiny', 'bfl');
    const x = toTensors(await loadIo('dev-tiny'));
    const before = tf.memory().numTensors;
    await expect(flux.forward({ ...inputs(x), guidance: undefined })).rejects.toThrow(FluxInputError);
    await expect(flux.forward({ ...inputs(x), guidance: undefined })).rejects.toThrow(/guidance is missing/);
    await expect(flux.forward({ ...inputs(x), y: x.txt! })).rejects.toThrow(/y is \[2, 5, 32\], expected \[2, 24\]/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(x));
    flux.dispose();
  });

  it('accepts [L, 3] ids shared by the batch (core FlowModel inputs)', async () => {
    const flux = await residentFlux('dev-tiny', 'bfl');
    expect(flux.guidanceEmbed).toBe(true);
    const io = await loadIo('dev-tiny');
    const x = toTensors(io);
    const imgIds = tf.tidy(() => tf.squeeze(tf.slice(x.img_ids!, [0, 0, 0], [1, -1, -1]), [0]));
    const txtIds = tf.tidy(() => tf.squeeze(tf.slice(x.txt_ids!, [0, 0, 0], [1, -1, -1]), [0]));
    const out = await flux.forward({ ...inputs(x), img_ids: imgIds, txt_ids: txtIds });
    expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: 'dev with 2-D ids' });
    tf.dispose([out, imgIds, txtIds, ...Object.values(x)]);
    flux.dispose();
  });

  it('ignores guidance on a schnell-like model', async () => {
    const flux = await residentFlux('schnell-tiny', 'bfl');
    const io = await loadIo('schnell-tiny');
    const x = toTensors(io);
    const g = tf.tensor1d([3.5, 1]);
    const out = await flux.forward({ ...inputs(x), guidance: g });
    expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: 'schnell with ignored guidance' });
    tf.dispose([out, g, ...Object.values(x)]);
    flux.dispose();
  });
});
