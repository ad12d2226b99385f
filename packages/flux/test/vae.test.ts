/**
 * FLUX autoencoder parity vs diffusers AutoencoderKL (tiny FLUX-shaped config, fp32), fixtures from
 * test/reference/gen_vae.py. Tolerance: relative L2 <= 1e-5 (fp32 end to end; observed values are printed by failures).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FluxError } from '@flux-ts/core';
import { expectClose, compareArrays } from '../../../test/harness/compare.ts';
import { loadFixture, loadJsonFixture, type FixtureTensor } from '../../../test/harness/fixtures.ts';
import {
  AutoEncoder,
  VaeInputError,
  VaeWeightsError,
  fromDiffusersConfig,
  imageToRgbBytes,
  rgbBytesToImage,
  type AutoEncoderParams,
  type WeightValue,
} from '../src/autoencoder/autoencoder.ts';

const TOL = 1e-5;

function toMap(rec: Record<string, FixtureTensor>): Map<string, WeightValue> {
  return new Map(Object.entries(rec).map(([k, t]) => [k, { data: t.data as Float32Array, shape: t.shape }]));
}

function tensor4(t: FixtureTensor): tf.Tensor4D {
  return tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]);
}

let params: AutoEncoderParams;
let bflWeights: Map<string, WeightValue>;
let diffusersWeights: Map<string, WeightValue>;
let ae: AutoEncoder;
let enc: Record<string, FixtureTensor>;
let dec: Record<string, FixtureTensor>;
let tiled: Record<string, FixtureTensor>;

beforeAll(async () => {
  params = fromDiffusersConfig(await loadJsonFixture('vae', 'vae-tiny.config.json'));
  bflWeights = toMap(await loadFixture('vae', 'vae-tiny.bfl.safetensors'));
  diffusersWeights = toMap(await loadFixture('vae', 'vae-tiny.diffusers.safetensors'));
  enc = await loadFixture('vae', 'encode.safetensors');
  dec = await loadFixture('vae', 'decode.safetensors');
  tiled = await loadFixture('vae', 'tiled.safetensors');
  ae = AutoEncoder.fromWeights(params, bflWeights, 'vae-tiny.bfl.safetensors');
});

afterAll(() => ae?.dispose());

describe('AutoEncoder parity vs diffusers AutoencoderKL (tiny FLUX config, 48x32 input)', () => {
  it('reads the tiny diffusers config', () => {
    expect(params.chMult).toEqual([1, 2, 4, 4]);
    expect(params.ch).toBe(8);
    expect(params.normNumGroups).toBe(4);
    expect(params.zChannels).toBe(16);
    expect(params.numResBlocks).toBe(2);
    expect(params.scaleFactor).toBe(0.3611);
    expect(params.shiftFactor).toBe(0.1159);
  });

  it('encoder: mean and logvar', () => {
    const x = tensor4(enc.x);
    const { mean, logvar } = ae.encodeMoments(x);
    expect(mean.shape).toEqual(enc.mean.shape);
    expectClose(mean, enc.mean.data as Float32Array, { relL2: TOL, label: 'encoder mean' });
    expectClose(logvar, enc.logvar.data as Float32Array, { relL2: TOL, label: 'encoder logvar' });
    tf.dispose([x, mean, logvar]);
  });

  it('encode: scaled mean and scaled sample with caller noise', () => {
    const x = tensor4(enc.x);
    const zm = ae.encode(x, { mode: 'mean' });
    expectClose(zm, enc.z_mean.data as Float32Array, { relL2: TOL, label: 'z (mean)' });
    const zs = ae.encode(x, { mode: 'sample', noise: enc.noise.data as Float32Array });
    expectClose(zs, enc.z_sample.data as Float32Array, { relL2: TOL, label: 'z (sample)' });
    tf.dispose([x, zm, zs]);
  });

  it('decoder: image and RGB bytes', () => {
    const z = tensor4(dec.z);
    const img = ae.decode(z);
    expect(img.shape).toEqual([1, 3, 48, 32]);
    expectClose(img, dec.image.data as Float32Array, { relL2: TOL, label: 'decoded image' });
    const px = imageToRgbBytes(img);
    expect([px.height, px.width]).toEqual([48, 32]);
    const ref = dec.pixels.data as Uint8Array;
    expect(px.data.length).toBe(ref.length);
    // fp32 noise can move a value across a rounding boundary: allow off-by-one on a few pixels only.
    let off = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(px.data[i] - ref[i]);
      expect(d).toBeLessThanOrEqual(1);
      if (d) off++;
    }
    expect(off).toBeLessThanOrEqual(3);
    tf.dispose([z, img]);
  });

  it('loads the same weights under diffusers names (table in vae-keys.ts) with identical outputs', () => {
    const ae2 = AutoEncoder.fromWeights(params, diffusersWeights, 'vae-tiny.diffusers.safetensors');
    const z = tensor4(dec.z);
    const a = ae.decode(z);
    const b = ae2.decode(z);
    expect(compareArrays(b.dataSync(), a.dataSync()).maxAbs).toBe(0);
    tf.dispose([z, a, b]);
    ae2.dispose();
  });

  it('tiled decode matches diffusers tiled_decode (4x4 latent tiles over a 7x9 latent)', () => {
    const z = tensor4(tiled.z);
    const opts = { tiling: { tileLatentSize: 4, tileSampleSize: 32, overlapFactor: 0.25 } };
    const t = ae.decode(z, opts);
    expect(t.shape).toEqual([1, 3, 56, 72]);
    expectClose(t, tiled.image_tiled.data as Float32Array, { relL2: TOL, label: 'tiled decode' });
    // defaults come from the config as diffusers derives them (sample_size 32 -> 4-cell tiles)
    const t2 = ae.decode(z, { tiling: true });
    expect(compareArrays(t2.dataSync(), t.dataSync()).maxAbs).toBe(0);
    const u = ae.decode(z);
    expectClose(u, tiled.image_untiled.data as Float32Array, { relL2: TOL, label: 'untiled decode' });
    tf.dispose([z, t, t2, u]);
  });

  it('tiling is a no-op when the latent fits in one tile (as diffusers decode)', () => {
    const z = tensor4(dec.z); // 6x4 latent
    const a = ae.decode(z);
    const b = ae.decode(z, { tiling: { tileLatentSize: 6, tileSampleSize: 48 } });
    expect(compareArrays(b.dataSync(), a.dataSync()).maxAbs).toBe(0);
    tf.dispose([z, a, b]);
  });
});

describe('AutoEncoder memory and errors', () => {
  it('does not leak tensors in encode / decode / tiled decode / pixels', () => {
    const x = tensor4(enc.x);
    const z = tensor4(tiled.z);
    // warm up (kernels may allocate constants once)
    tf.dispose([ae.encode(x), ae.decode(z, { tiling: true })]);
    const before = tf.memory().numTensors;
    const zm = ae.encode(x, { mode: 'sample', noise: enc.noise.data as Float32Array });
    const { mean, logvar } = ae.encodeMoments(x);
    const img = ae.decode(zm);
    const timg = ae.decode(z, { tiling: true });
    imageToRgbBytes(img);
    tf.dispose([zm, mean, logvar, img, timg]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, z]);
  });

  it('strict loading names missing, unexpected and mis-shaped keys', () => {
    const w = new Map(bflWeights);
    w.delete('decoder.up.0.block.2.conv1.weight');
    w.set('decoder.extra.weight', { data: new Float32Array(1), shape: [1] });
    w.set('encoder.conv_in.bias', { data: new Float32Array(9), shape: [9] });
    let err: unknown;
    try {
      AutoEncoder.fromWeights(params, w);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VaeWeightsError);
    expect(err).toBeInstanceOf(FluxError);
    const msg = (err as Error).message;
    expect(msg).toContain('missing 1 key(s): decoder.up.0.block.2.conv1.weight');
    expect(msg).toContain('unexpected 1 key(s): decoder.extra.weight');
    expect(msg).toContain('encoder.conv_in.bias is [9], expected [8]');
  });

  it('rejects bad inputs with typed errors', () => {
    const bad = tf.zeros([1, 4, 16, 16]) as tf.Tensor4D;
    expect(() => ae.encode(bad)).toThrow(VaeInputError);
    expect(() => ae.decode(bad)).toThrow(VaeInputError);
    const x = tensor4(enc.x);
    expect(() => ae.encode(x, { mode: 'sample', noise: new Float32Array(3) })).toThrow(/noise has 3 values/);
    tf.dispose([bad, x]);
  });

  it('RGB bytes round trip through the [-1, 1] image convention', () => {
    const bytes = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const img = rgbBytesToImage(bytes, 3, 2);
    expect(img.shape).toEqual([1, 3, 2, 3]);
    expect(Array.from(imageToRgbBytes(img).data)).toEqual(Array.from(bytes));
    img.dispose();
  });
});
