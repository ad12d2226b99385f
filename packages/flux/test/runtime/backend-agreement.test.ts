/**
 * The same ops on every backend in one process (switching with tf.setBackend) must agree to fp32
 * rounding: relative L2 <= 1e-5 against the pure-JS `cpu` backend. The native part is skipped, with
 * the reason, when @tensorflow/tfjs-node is not built (`pnpm setup:native`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFluxError } from '@flux-ts/core';
import { compareArrays } from '../../../../test/harness/compare.ts';
import { initBackend } from '../../src/runtime/backend.ts';

const REL_L2 = 1e-5;

/** Deterministic values in [-1, 1) (xorshift32), so every backend gets identical inputs. */
function uniform(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const gelu_tanh = (x: tf.Tensor): tf.Tensor =>
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));

function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-6): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), gamma), beta);
}

interface Case {
  name: string;
  run: () => tf.Tensor;
}

const CASES: Case[] = [
  {
    name: 'matmul 64x64',
    run: () => tf.matMul(tf.tensor2d(uniform(64 * 64, 1), [64, 64]), tf.tensor2d(uniform(64 * 64, 2), [64, 64])),
  },
  {
    name: 'batched matmul with transposed b (attention scores)',
    run: () =>
      tf.matMul(tf.tensor3d(uniform(2 * 24 * 32, 3), [2, 24, 32]), tf.tensor3d(uniform(2 * 24 * 32, 4), [2, 24, 32]), false, true),
  },
  {
    name: 'conv2d 3x3 same, NHWC',
    run: () =>
      tf.add(
        tf.conv2d(tf.tensor4d(uniform(1 * 16 * 16 * 32, 5), [1, 16, 16, 32]), tf.tensor4d(uniform(3 * 3 * 32 * 16, 6), [3, 3, 32, 16]), 1, 'same'),
        tf.tensor1d(uniform(16, 7)),
      ),
  },
  {
    name: 'softmax over the last axis',
    run: () => tf.softmax(tf.mul(tf.tensor2d(uniform(8 * 77, 8), [8, 77]), 6)),
  },
  {
    name: 'layer norm (moments, rsqrt, affine)',
    run: () => layerNorm(tf.mul(tf.tensor2d(uniform(16 * 96, 9), [16, 96]), 3), tf.tensor1d(uniform(96, 10)), tf.tensor1d(uniform(96, 11))),
  },
  {
    name: 'gelu (tanh approximation)',
    run: () => gelu_tanh(tf.mul(tf.tensor1d(uniform(4096, 12)), 4)),
  },
];

function runAll(): Float32Array[] {
  return CASES.map((c) => tf.tidy(() => c.run().dataSync() as Float32Array).slice());
}

let original: string | undefined;
let nativeSkip: string | undefined;

beforeAll(async () => {
  await initBackend({ quiet: true }); // normally done by test/setup-backend.ts; a no-op then
  original = tf.getBackend();
  try {
    await initBackend({ backend: 'tensorflow', quiet: true });
  } catch (e) {
    if (!isFluxError(e)) throw e;
    nativeSkip = `native backend unavailable: ${e.message}`;
    console.warn(`backend-agreement: skipping the tensorflow comparisons (${nativeSkip})`);
  }
  await tf.setBackend(original!);
});

afterAll(async () => {
  if (original) await tf.setBackend(original);
});

async function onBackend(name: string): Promise<Float32Array[]> {
  expect(await tf.setBackend(name)).toBe(true);
  const n0 = tf.memory().numTensors;
  const out = runAll();
  expect(tf.memory().numTensors).toBe(n0);
  return out;
}

describe('backends agree on the ops the models use', () => {
  let reference: Float32Array[];
  beforeAll(async () => {
    reference = await onBackend('cpu');
  });

  for (const other of ['wasm', 'tensorflow'] as const) {
    it(`${other} matches cpu to relL2 <= ${REL_L2}`, async (ctx) => {
      if (other === 'tensorflow' && nativeSkip) ctx.skip(nativeSkip);
      const got = await onBackend(other);
      CASES.forEach((c, i) => {
        const cmp = compareArrays(got[i], reference[i]);
        expect(cmp.relL2, `${c.name} on ${other}: relL2 ${cmp.relL2.toExponential(2)}, maxAbs ${cmp.maxAbs.toExponential(2)}`).toBeLessThanOrEqual(REL_L2);
        expect(cmp.n).toBeGreaterThan(0);
        if (process.env.FLUX_TEST_VERBOSE) console.log(`${other} ${c.name}: relL2 ${cmp.relL2.toExponential(2)}`);
      });
    });
  }

  it('the ops are not trivial (outputs differ from the inputs and are finite)', () => {
    for (const out of reference) {
      expect(out.every(Number.isFinite)).toBe(true);
      expect(out.some((v) => v !== 0)).toBe(true);
    }
  });
});
