/**
 * Weight residency (resident vs streamed) and memory: identical outputs, no tensors left behind, the streamed peak
 * (tfjs bytes between modules) bounded by the largest module's weights plus activations, and the attention head
 * chunk chosen from a memory budget.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { describe, expect, it } from 'vitest';
import { compareArrays, expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { FLUX_SCHNELL } from '../../src/transformer/config.ts';
import { autoHeadChunk, Flux, fluxParamSpec, type FluxParams } from '../../src/transformer/flux.ts';
import { defaultResidency, loadTransformer, openTransformerWeights } from '../../src/transformer/load.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { CONFIGS, loadIo, loadParams, toTensors } from './helpers.ts';

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** float32 bytes of each module the forward fetches (prefix -> bytes). */
function moduleBytes(p: FluxParams): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, shape] of Object.entries(fluxParamSpec(p))) {
    const m = /^((?:double|single)_blocks\.\d+\.|[a-z_]+\.)/.exec(k)!;
    out.set(m[1]!, (out.get(m[1]!) ?? 0) + 4 * numel(shape));
  }
  return out;
}

describe.each(CONFIGS)('Flux %s residency', (name) => {
  it('resident and streamed give identical outputs; the streamed peak is one module plus activations', async () => {
    const params = await loadParams(name);
    const io = await loadIo(name);
    const x = toTensors(io);
    const inputs = { img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance };
    const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.bfl.safetensors`));

    const run = async (residency: 'resident' | 'streamed') => {
      const base = tf.memory().numBytes;
      let peak = 0;
      const flux = await loadTransformer(ckpt, params, {
        residency,
        onModule: () => {
          peak = Math.max(peak, tf.memory().numBytes - base);
        },
      });
      expect(flux.weights.residency).toBe(residency);
      const before = tf.memory().numTensors;
      const out = await flux.forward(inputs);
      const data = await out.data();
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      flux.dispose();
      return { data, peak };
    };
    const resident = await run('resident');
    const streamed = await run('streamed');
    expectClose(streamed.data, io.out_bfl!.data as Float32Array, { relL2: 1e-5, label: `${name} streamed` });
    expect(compareArrays(streamed.data, resident.data).maxAbs).toBe(0);

    const mods = moduleBytes(params);
    const total = [...mods.values()].reduce((a, b) => a + b, 0);
    const largest = Math.max(...mods.values());
    // live between modules: img, txt (or x = [txt; img]) at hidden width, vec, ids, rope cos/sin, the output
    const b = inputs.img.shape[0]!;
    const l = inputs.img.shape[1]! + inputs.txt.shape[1]!;
    const activations = 4 * b * (2 * l * params.hiddenSize + params.hiddenSize + l * (3 + params.hiddenSize / params.numHeads) + l * params.outChannels);
    expect(resident.peak).toBeGreaterThanOrEqual(total); // all weights at once
    expect(streamed.peak).toBeLessThanOrEqual(largest + activations);
    expect(streamed.peak).toBeLessThan(total / 2);
    tf.dispose(Object.values(x));
    await ckpt.close();
  });
});

describe('residency and attention options', () => {
  it('streams by default except on the native backend with a GPU', () => {
    expect(defaultResidency({ name: 'wasm', device: 'WebAssembly SIMD, 1 thread' })).toBe('streamed');
    expect(defaultResidency({ name: 'cpu', device: 'JavaScript' })).toBe('streamed');
    expect(defaultResidency({ name: 'tensorflow', device: 'CPU' })).toBe('streamed');
    expect(defaultResidency({ name: 'tensorflow', device: 'GPU' })).toBe('resident');
  });

  it('rejects an unknown residency with a typed error', async () => {
    const params = await loadParams('schnell-tiny');
    const ckpt = await openCheckpoint(fixturePath('transformer', 'schnell-tiny.bfl.safetensors'));
    await expect(loadTransformer(ckpt, params, { residency: 'mmap' as 'resident' })).rejects.toThrow(FluxError);
    await ckpt.close();
  });

  it('chooses the attention head chunk from the memory budget', () => {
    const h = FLUX_SCHNELL.numHeads;
    expect(autoHeadChunk(1, h, 256 + 64 * 64)).toBe(2); // 1024x1024: 3 x 4352^2 x 4 B = 227 MB per head, 512 MiB budget
    expect(autoHeadChunk(1, h, 256 + 32 * 32)).toBe(h); // 512x512: all heads at once
    expect(autoHeadChunk(1, h, 256 + 16 * 16)).toBe(h);
    expect(autoHeadChunk(2, h, 256 + 64 * 64)).toBe(1);
    expect(autoHeadChunk(4, h, 256 + 128 * 128)).toBe(1); // never zero
    expect(autoHeadChunk(1, h, 1280, 2 ** 40)).toBe(h);
  });

  it('gives the same output with a budget that forces one head per chunk', async () => {
    const params = await loadParams('schnell-tiny');
    const io = await loadIo('schnell-tiny');
    const x = toTensors(io);
    const inputs = { img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y! };
    const ckpt = await openCheckpoint(fixturePath('transformer', 'schnell-tiny.bfl.safetensors'));
    const l = inputs.img.shape[1]! + inputs.txt.shape[1]!;
    expect(autoHeadChunk(1, params.numHeads, l, 1)).toBe(1);
    const whole = new Flux(params, openTransformerWeights(ckpt, params, { residency: 'streamed' }), { attentionHeadChunk: params.numHeads });
    const tiny = new Flux(params, openTransformerWeights(ckpt, params, { residency: 'streamed' }), { attentionBudgetBytes: 1 });
    const a = await whole.forward(inputs);
    const b = await tiny.forward(inputs);
    expectClose(b, await a.data(), { relL2: 1e-6, label: 'one head per chunk' });
    expect(() => new Flux(params, whole.weights, { attentionBudgetBytes: 0 })).toThrow(FluxError);
    tf.dispose([a, b, ...Object.values(x)]);
    await ckpt.close();
  });
});
