/**
 * Parity of the basic layers with fixtures from torch / BFL (test/reference/gen_nn.py).
 * Tolerance: relative L2 <= 1e-5 (fp32 on both sides).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu'; // fallback when no test setup picked a backend
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { loadFixture, type FixtureTensor } from '../../../../test/harness/fixtures.ts';
import { Linear, linear } from '../../src/nn/linear.ts';
import { layerNorm } from '../../src/nn/layer-norm.ts';
import { rmsNorm } from '../../src/nn/rms-norm.ts';
import { geluTanh } from '../../src/nn/gelu.ts';

const TOL = 1e-5;
const T = (f: FixtureTensor) => tf.tensor(f.data as Float32Array, f.shape);

/** Runs fn on fresh inputs and checks the call leaves no tensor behind. */
function leaks(makeInputs: () => tf.Tensor[], fn: (...xs: tf.Tensor[]) => tf.Tensor): number {
  const inputs = makeInputs();
  const before = tf.memory().numTensors;
  const y = fn(...inputs);
  y.dispose();
  const after = tf.memory().numTensors;
  tf.dispose(inputs);
  return after - before;
}

beforeAll(async () => {
  await tf.ready();
});

describe('linear (torch.nn.Linear)', () => {
  it('y = x W^T + b, with and without bias', async () => {
    const f = await loadFixture('nn', 'linear.safetensors');
    const [x, w, b, wnb] = [T(f.x), T(f.weight) as tf.Tensor2D, T(f.bias) as tf.Tensor1D, T(f.weight_nobias) as tf.Tensor2D];
    const y = linear(x, w, b);
    expect(y.shape).toEqual(f.y.shape);
    expectClose(y, f.y.data, { relL2: TOL, label: 'linear' });
    const yn = new Linear(wnb).forward(x);
    expectClose(yn, f.y_nobias.data, { relL2: TOL, label: 'linear, no bias' });
    const layer = new Linear(w, b);
    expect([layer.inFeatures, layer.outFeatures]).toEqual([16, 24]);
    expectClose(layer.forward(x), f.y.data, { relL2: TOL, label: 'Linear.forward' });
    tf.dispose([x, w, b, wnb, y, yn]);
  });

  it('rejects a mismatched input', () => {
    const w = tf.zeros([4, 3]) as tf.Tensor2D;
    const x = tf.zeros([2, 5]);
    expect(() => linear(x, w)).toThrow(/does not end in 3/);
    tf.dispose([w, x]);
  });
});

describe('layerNorm', () => {
  it('no affine, eps 1e-6 (FLUX) and affine, eps 1e-5 (CLIP)', async () => {
    const f = await loadFixture('nn', 'layer_norm.safetensors');
    const [x, w, b] = [T(f.x), T(f.weight) as tf.Tensor1D, T(f.bias) as tf.Tensor1D];
    const y = layerNorm(x, 1e-6);
    expect(y.shape).toEqual(f.y.shape);
    expectClose(y, f.y.data, { relL2: TOL, label: 'layerNorm' });
    const ya = layerNorm(x, 1e-5, w, b);
    expectClose(ya, f.y_affine.data, { relL2: TOL, label: 'layerNorm affine' });
    tf.dispose([x, w, b, y, ya]);
  });
});

describe('rmsNorm (BFL RMSNorm)', () => {
  it('x * rsqrt(mean(x^2) + 1e-6) * scale', async () => {
    const f = await loadFixture('nn', 'rms_norm.safetensors');
    const [x, s] = [T(f.x), T(f.scale) as tf.Tensor1D];
    const y = rmsNorm(x, s, 1e-6);
    expect(y.shape).toEqual(f.y.shape);
    expectClose(y, f.y.data, { relL2: TOL, label: 'rmsNorm' });
    tf.dispose([x, s, y]);
  });
});

describe('geluTanh (torch GELU approximate=tanh)', () => {
  it('matches on [-8, 8] and random inputs', async () => {
    const f = await loadFixture('nn', 'gelu.safetensors');
    const x = T(f.x);
    const y = geluTanh(x);
    expectClose(y, f.y.data, { relL2: TOL, label: 'geluTanh' });
    tf.dispose([x, y]);
  });
});

describe('memory', () => {
  it('leaves the tensor count unchanged', () => {
    const w = () => tf.randomNormal([8, 4]) as tf.Tensor2D;
    const v = (n: number) => tf.randomNormal([n]) as tf.Tensor1D;
    expect(leaks(() => [tf.randomNormal([3, 4]), w(), v(8)], (x, a, b) => linear(x, a as tf.Tensor2D, b as tf.Tensor1D))).toBe(0);
    expect(leaks(() => [tf.randomNormal([2, 3, 4]), w()], (x, a) => linear(x, a as tf.Tensor2D))).toBe(0);
    expect(leaks(() => [tf.randomNormal([3, 4])], (x) => layerNorm(x, 1e-6))).toBe(0);
    expect(leaks(() => [tf.randomNormal([3, 4]), v(4), v(4)], (x, a, b) => layerNorm(x, 1e-5, a as tf.Tensor1D, b as tf.Tensor1D))).toBe(0);
    expect(leaks(() => [tf.randomNormal([3, 4]), v(4)], (x, s) => rmsNorm(x, s as tf.Tensor1D, 1e-6))).toBe(0);
    expect(leaks(() => [tf.randomNormal([3, 4])], (x) => geluTanh(x))).toBe(0);
  });
});
