/**
 * FLUX autoencoder parity vs diffusers AutoencoderKL (tiny FLUX-shaped config, fp32), fixtures from
 * test/reference/gen_vae.py. Tolerance: relative L2 <= 1e-5 (fp32 end to end; observed values are printed by failures).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FluxError, TorchGenerator } from '@flux-ts/core';
import { expectClose, compareArrays } from '../../../../test/harness/compare.ts';
import { loadFixture, loadJsonFixture, type FixtureTensor } from '../../../../test/harness/fixtures.ts';
import {
  AutoEncoder,
  VaeInputError,
  VaeWeightsError,
  imageToRgbBytes,
  rgbBytesToImage,
  type AutoEncoderParams,
} from '../../src/autoencoder/autoencoder.ts';
import { autoEncoderParamsFromDiffusers } from '../../src/autoencoder/config.ts';
import { autoEncoderFromWeights } from '../../src/autoencoder/load.ts';
import type { WeightValue } from '../../src/weights/checkpoint.ts';
import { activationBudget, estimateDecodeMemory, estimateEncodeMemory, WASM_HEAP_LIMIT_BYTES } from '../../src/autoencoder/memory.ts';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';

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
let encSample: Record<string, FixtureTensor>;
let tiledEnc: Record<string, FixtureTensor>;

beforeAll(async () => {
  params = autoEncoderParamsFromDiffusers(await loadJsonFixture('vae', 'vae-tiny.config.json'));
  bflWeights = toMap(await loadFixture('vae', 'vae-tiny.bfl.safetensors'));
  diffusersWeights = toMap(await loadFixture('vae', 'vae-tiny.diffusers.safetensors'));
  enc = await loadFixture('vae', 'encode.safetensors');
  dec = await loadFixture('vae', 'decode.safetensors');
  tiled = await loadFixture('vae', 'tiled.safetensors');
  encSample = await loadFixture('vae', 'encode-sample.safetensors');
  tiledEnc = await loadFixture('vae', 'tiled-encode.safetensors');
  ae = autoEncoderFromWeights(params, bflWeights, 'vae-tiny.bfl.safetensors');
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

  it('loads the same weights under diffusers names (rules in autoencoder/keys.ts) with identical outputs', () => {
    const ae2 = autoEncoderFromWeights(params, diffusersWeights, 'vae-tiny.diffusers.safetensors');
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

  it('encode sample from a seeded TorchGenerator == latent_dist.sample(torch.Generator().manual_seed(1234)), then the next draw', () => {
    const x = tensor4(encSample.x);
    const g = new TorchGenerator(1234);
    const z = ae.encode(x, { mode: 'sample', generator: g });
    expectClose(z, encSample.z_seeded.data as Float32Array, { relL2: TOL, label: 'z (seeded sample)' });
    // the generator continues exactly where diffusers' does: the pipeline's noise comes next, seed-for-seed
    const next = g.randn(z.shape);
    expect(compareArrays(next, encSample.noise_after.data as Float32Array).maxAbs).toBe(0);
    // and drawing the noise up front is the same thing
    const z2 = ae.encode(x, { mode: 'sample', noise: new TorchGenerator(1234).randn([1, 16, 6, 4]) });
    expect(compareArrays(z2.dataSync(), z.dataSync()).maxAbs).toBe(0);
    tf.dispose([x, z, z2]);
  });

  it('tiled encode matches diffusers _tiled_encode (32 px tiles every 24 px over 56x72)', () => {
    const x = tensor4(tiledEnc.x);
    const m = tiledEnc.moments_tiled;
    const [, c2, h, w] = m.shape;
    const z = c2 / 2;
    const ref = m.data as Float32Array;
    const refMean = ref.subarray(0, z * h * w);
    const refLogvar = Float32Array.from(ref.subarray(z * h * w), (v) => Math.min(20, Math.max(-30, v)));
    for (const tiling of [{ tileSampleSize: 32, tileLatentSize: 4, overlapFactor: 0.25 }, true] as const) {
      const { mean, logvar } = ae.encodeMoments(x, { tiling });
      expect(mean.shape).toEqual([1, z, h, w]);
      expectClose(mean, refMean, { relL2: TOL, label: 'tiled encode mean' });
      expectClose(mean, tiledEnc.mean_tiled.data as Float32Array, { relL2: TOL, label: 'tiled latent_dist.mean' });
      expectClose(logvar, refLogvar, { relL2: TOL, label: 'tiled encode logvar' });
      tf.dispose([mean, logvar]);
    }
    const { mean } = ae.encodeMoments(x, { tiling: false });
    expectClose(mean, (tiledEnc.moments_untiled.data as Float32Array).subarray(0, z * h * w), { relL2: TOL, label: 'untiled encode mean' });
    tf.dispose([x, mean]);
  });

  it('tiled vs untiled decode differ exactly as much as in diffusers (random weights: the mid attention and GroupNorm are global)', () => {
    // With random weights tiles differ wholesale from the whole decode (diffusers: relL2 ~0.97 on this fixture), so an
    // elementwise tolerance against the untiled image would be meaningless. What is tested: our gap equals the
    // reference's gap, the seams are blended as the reference blends them (parity above), and one tile == untiled.
    const z = tensor4(tiled.z);
    const t = ae.decode(z, { tiling: true });
    const u = ae.decode(z, { tiling: false });
    const ours = compareArrays(t.dataSync(), u.dataSync()).relL2;
    const ref = compareArrays(tiled.image_tiled.data as Float32Array, tiled.image_untiled.data as Float32Array).relL2;
    expect(Math.abs(ours - ref)).toBeLessThan(1e-4);
    tf.dispose([z, t, u]);
  });

  it('tiling is a no-op when the latent fits in one tile (as diffusers decode)', () => {
    const z = tensor4(dec.z); // 6x4 latent
    const a = ae.decode(z);
    const b = ae.decode(z, { tiling: { tileLatentSize: 6, tileSampleSize: 48 } });
    expect(compareArrays(b.dataSync(), a.dataSync()).maxAbs).toBe(0);
    tf.dispose([z, a, b]);
  });
});

describe('decode/encode peak memory estimate and automatic tiling', () => {
  const MiB = 2 ** 20;
  it('FLUX VAE: the decoder peak is the first full-resolution ResnetBlock at 512^2 and 1024^2', () => {
    const d512 = estimateDecodeMemory(FLUX_VAE, { batch: 1, height: 64, width: 64 });
    const d1024 = estimateDecodeMemory(FLUX_VAE, { batch: 1, height: 128, width: 128 });
    expect(d512.stage).toBe('decoder.up.0.block.0');
    expect(d1024.stage).toBe('decoder.up.0.block.0');
    // 5 x 256 channel maps of H x W floats, x 1.25 workspace: 1.56 GiB at 512^2, 6.25 GiB at 1024^2
    expect(d512.peakBytes).toBe(Math.ceil(5 * 256 * 512 * 512 * 4 * 1.25));
    expect(d1024.peakBytes).toBe(Math.ceil(5 * 256 * 1024 * 1024 * 4 * 1.25));
    expect(estimateDecodeMemory(FLUX_VAE, { batch: 2, height: 64, width: 64 }).peakBytes).toBeGreaterThan(1.99 * d512.peakBytes);
    const e1024 = estimateEncodeMemory(FLUX_VAE, { batch: 1, height: 1024, width: 1024 });
    expect(e1024.stage).toBe('encoder.down.0.block.0');
    expect(e1024.peakBytes).toBeLessThan(d1024.peakBytes);
    expect(() => estimateDecodeMemory(FLUX_VAE, { batch: 1, height: 0, width: 4 })).toThrow(RangeError);
  });

  it('the mid attention score blocks dominate when the latent is huge and the channels few', () => {
    const p = { ...FLUX_VAE, ch: 4, chMult: [1, 1], normNumGroups: 2 };
    expect(estimateDecodeMemory(p, { batch: 1, height: 128, width: 128 }).stage).toBe('decoder.mid.attn_1');
  });

  it('budget: wasm heap minus twice the held tensors (XNNPACK packed copies) minus margin; native: option or half of RAM minus held', () => {
    const held = 300 * MiB;
    expect(activationBudget({ backend: 'wasm', heldBytes: held, totalMemBytes: 64 * 2 ** 30 })).toBe(WASM_HEAP_LIMIT_BYTES - 2 * held - 1024 * MiB);
    expect(activationBudget({ backend: 'wasm', heldBytes: held, totalMemBytes: 64 * 2 ** 30, budgetBytes: 2 ** 40 })).toBe(WASM_HEAP_LIMIT_BYTES - 2 * held - 1024 * MiB);
    expect(activationBudget({ backend: 'tensorflow', heldBytes: held, totalMemBytes: 16 * 2 ** 30 })).toBe(8 * 2 ** 30 - held);
    expect(activationBudget({ backend: 'cpu', heldBytes: held, totalMemBytes: 16 * 2 ** 30, budgetBytes: 123 })).toBe(123);
    // with FLUX's decoder weights held (~200 MB), 512^2 fits the wasm heap and 1024^2 does not
    const wasm = activationBudget({ backend: 'wasm', heldBytes: 200 * MiB, totalMemBytes: 16 * 2 ** 30 });
    expect(estimateDecodeMemory(FLUX_VAE, { batch: 1, height: 64, width: 64 }).peakBytes).toBeLessThan(wasm);
    expect(estimateDecodeMemory(FLUX_VAE, { batch: 1, height: 128, width: 128 }).peakBytes).toBeGreaterThan(wasm);
  });

  it('bounds the tensor bytes the backend actually holds (tf.profile peak): measured <= estimate <= 2.5x measured', async () => {
    for (const [lh, lw] of [[6, 4], [12, 8]] as const) {
      const z = tf.randomNormal([1, lh, lw, 16]) as tf.Tensor4D;
      const x = tf.randomNormal([1, lh * 8, lw * 8, 3]) as tf.Tensor4D;
      const s1 = tf.memory().numBytes;
      const pd = await tf.profile(() => ae.decoder.forward(z).dispose());
      const s2 = tf.memory().numBytes;
      const pe = await tf.profile(() => ae.encoder.forward(x).dispose());
      const dec = estimateDecodeMemory(params, { batch: 1, height: lh, width: lw }).peakBytes;
      const encE = estimateEncodeMemory(params, { batch: 1, height: lh * 8, width: lw * 8 }).peakBytes;
      for (const [label, est, measured] of [['decode', dec, pd.peakBytes - s1], ['encode', encE, pe.peakBytes - s2]] as const) {
        expect(measured, label).toBeGreaterThan(0);
        expect(est, `${label} estimate ${est} vs measured ${measured}`).toBeGreaterThanOrEqual(measured);
        expect(est, `${label} estimate ${est} vs measured ${measured}`).toBeLessThanOrEqual(2.5 * measured);
      }
      tf.dispose([z, x]);
    }
  });

  it("'auto' decodes whole within the budget and tiles (largest fitting tile) when the budget is too small", () => {
    const z = tensor4(tiled.z); // 7x9 latent
    const whole = ae.planDecode(z.shape);
    expect(whole.tiled).toBe(false);
    const tileBudget = estimateDecodeMemory(params, { batch: 1, height: 6, width: 6 }).peakBytes; // < whole 7x9; 8 is the smallest tile
    const plan = ae.planDecode(z.shape, { memoryBudgetBytes: tileBudget });
    expect(plan.wholeBytes).toBeGreaterThan(tileBudget);
    expect(plan).toMatchObject({ tiled: true, tileIn: 8, tileOut: 64, overlapFactor: 0.25 });
    const auto = ae.decode(z, { memoryBudgetBytes: tileBudget });
    const explicit = ae.decode(z, { tiling: { tileLatentSize: 8, tileSampleSize: 64, overlapFactor: 0.25 } });
    expect(compareArrays(auto.dataSync(), explicit.dataSync()).maxAbs).toBe(0);
    expect(() => ae.decode(z, { memoryBudgetBytes: -1 })).toThrow(VaeInputError);
    const x = tensor4(tiledEnc.x);
    expect(ae.planEncode(x.shape).tiled).toBe(false);
    const encPlan = ae.planEncode(x.shape, { memoryBudgetBytes: estimateEncodeMemory(params, { batch: 1, height: 48, width: 48 }).peakBytes });
    expect(encPlan).toMatchObject({ tiled: true, tileIn: 64, tileOut: 8 });
    tf.dispose([z, auto, explicit, x]);
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
    const tenc = ae.encode(x, { mode: 'sample', generator: new TorchGenerator(1), tiling: { tileSampleSize: 16 } });
    imageToRgbBytes(img);
    tf.dispose([zm, mean, logvar, img, timg, tenc]);
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
      autoEncoderFromWeights(params, w);
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
