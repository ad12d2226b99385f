/**
 * fp8 single files: the tiny schnell fixture with its weights converted to F8_E4M3 here (float32 -> e4m3fn, round to
 * nearest even, saturating), plain and ComfyUI "scaled fp8" (scaled_fp8 marker, per-tensor scale_weight and
 * scale_input). Streamed and resident loads must give exactly the output of the float32 dequantized weights.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareArrays } from '../../../../test/harness/compare.ts';
import { loadFixture } from '../../../../test/harness/fixtures.ts';
import { Flux } from '../../src/transformer/flux.ts';
import { TransformerWeightsError } from '../../src/transformer/keys.ts';
import { loadTransformer, openTransformerWeights } from '../../src/transformer/load.ts';
import { f8e4m3LookupTable } from '../../src/weights/dtypes.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { writeSafetensors, type NamedTensor } from '../../src/weights/safetensors.ts';
import { fluxFromValues, loadIo, loadParams, toTensors, type Fixture } from './helpers.ts';

const E4M3 = f8e4m3LookupTable();
/** the non-negative finite e4m3fn values, ascending with the byte (0x00 .. 0x7E) */
const POS = Array.from(E4M3.subarray(0, 0x7f));

/** float32 -> F8_E4M3 byte: round to nearest, ties to even mantissa; beyond ±448 saturates (no infinities). */
export function toE4M3(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (a >= POS[0x7e]!) return sign | 0x7e;
  let lo = 0;
  let hi = 0x7e;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (POS[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - POS[lo]!;
  const dh = POS[hi]! - a;
  const b = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | b;
}

function encode(values: ArrayLike<number>, scale = 1): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toE4M3(values[i]! / scale);
  return out;
}

function decode(bytes: Uint8Array, scale = 1): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = Math.fround(E4M3[bytes[i]!]! * scale);
  return out;
}

const isMatrix = (k: string, shape: number[]) => k.endsWith('.weight') && shape.length === 2;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-fp8-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('float32 -> e4m3 rounding (test helper)', () => {
  it('is exact on representable values, rounds to nearest even, saturates', () => {
    for (let b = 0; b < 256; b++) if ((b & 0x7f) !== 0x7f) expect(toE4M3(E4M3[b]!)).toBe(b);
    expect(E4M3[toE4M3(1.0625)]).toBe(1); // halfway between 1 and 1.125: even mantissa (1)
    expect(E4M3[toE4M3(1.1875)]).toBe(1.25); // halfway between 1.125 and 1.25: even (1.25)
    expect(E4M3[toE4M3(1e6)]).toBe(448);
    expect(E4M3[toE4M3(-1e6)]).toBe(-448);
  });
});

describe('Flux from an F8_E4M3 single file', () => {
  for (const variant of ['plain', 'scaled', 'scaled+prefix'] as const) {
    it(`${variant}: streamed and resident outputs equal the dequantized float32 weights exactly`, async () => {
      const params = await loadParams('schnell-tiny');
      const src = (await loadFixture('transformer', 'schnell-tiny.bfl.safetensors')) as Fixture;
      const scaled = variant !== 'plain';
      const prefix = variant === 'scaled+prefix' ? 'model.diffusion_model.' : '';
      const file: Record<string, NamedTensor> = {};
      const dequant: Record<string, tf.Tensor> = {};
      let n = 0;
      for (const [k, v] of Object.entries(src)) {
        const data = v.data as Float32Array;
        if (isMatrix(k, v.shape)) {
          let s = 1;
          if (scaled) {
            s = Math.fround(data.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / 448);
            // ComfyUI stores a 0-d float32 scale; the Linear's input scale is carried but unused in float32
            file[prefix + k.replace(/\.weight$/, '.scale_weight')] = { dtype: 'F32', shape: n % 2 ? [] : [1], data: new Float32Array([s]) };
            if (n % 3 === 0) file[prefix + k.replace(/\.weight$/, '.scale_input')] = { dtype: 'F32', shape: [], data: new Float32Array([1]) };
          }
          const bytes = encode(data, s);
          file[prefix + k] = { dtype: 'F8_E4M3', shape: v.shape, data: bytes };
          dequant[k] = tf.tensor(decode(bytes, s), v.shape);
          n++;
        } else {
          file[prefix + k] = { dtype: 'F32', shape: v.shape, data };
          dequant[k] = tf.tensor(data, v.shape);
        }
      }
      if (scaled) file[`${prefix}scaled_fp8`] = { dtype: 'F8_E4M3', shape: [0], data: new Uint8Array(0) };
      const path = join(dir, `schnell-tiny.${variant}.fp8.safetensors`);
      await writeSafetensors(path, file);

      const io = await loadIo('schnell-tiny');
      const x = toTensors(io);
      const inputs = { img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y! };
      const reference = await fluxFromValues(params, dequant);
      tf.dispose(Object.values(dequant)); // read into the model's own tensors
      const want = await reference.forward(inputs);
      const wantData = await want.data();
      // fp8 weights are a different model: the output moves, but stays near the float32 one
      const vsF32 = compareArrays(wantData, io.out_bfl!.data as Float32Array);
      expect(vsF32.relL2).toBeGreaterThan(0);
      expect(vsF32.relL2).toBeLessThan(0.2);

      const ckpt = await openCheckpoint(path);
      const before = tf.memory().numTensors;
      const streamed = new Flux(params, openTransformerWeights(ckpt, params, { residency: 'streamed' }));
      const got = await streamed.forward(inputs);
      expect(compareArrays(await got.data(), wantData).maxAbs).toBe(0);
      got.dispose();
      expect(tf.memory().numTensors).toBe(before);

      const resident = await loadTransformer(ckpt, params, { residency: 'resident' });
      const got2 = await resident.forward(inputs);
      expect(compareArrays(await got2.data(), wantData).maxAbs).toBe(0);
      tf.dispose([got2, want, ...Object.values(x)]);
      resident.dispose();
      reference.dispose();
      await ckpt.close();
    });
  }

  it('rejects per-channel scales and unknown quantization keys with a clear message', async () => {
    const params = await loadParams('schnell-tiny');
    const src = (await loadFixture('transformer', 'schnell-tiny.bfl.safetensors')) as Fixture;
    const base: Record<string, NamedTensor> = {};
    for (const [k, v] of Object.entries(src)) base[k] = { dtype: 'F32', shape: v.shape, data: v.data as Float32Array };

    const perChannel = join(dir, 'per-channel.safetensors');
    await writeSafetensors(perChannel, { ...base, 'img_in.scale_weight': { dtype: 'F32', shape: [4], data: new Float32Array(4).fill(1) } });
    const a = await openCheckpoint(perChannel);
    expect(() => openTransformerWeights(a, params)).toThrow(TransformerWeightsError);
    expect(() => openTransformerWeights(a, params)).toThrow(/img_in\.scale_weight has shape \[4\], a per-tensor scalar expected/);
    await a.close();

    const other = join(dir, 'weight-scale.safetensors');
    await writeSafetensors(other, { ...base, 'img_in.weight_scale': { dtype: 'F32', shape: [], data: new Float32Array([1]) } });
    const b = await openCheckpoint(other);
    expect(() => openTransformerWeights(b, params)).toThrow(TransformerWeightsError);
    expect(() => openTransformerWeights(b, params)).toThrow(/unexpected 1 key\(s\): img_in\.weight_scale/);
    await b.close();
  });
});
