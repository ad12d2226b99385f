/**
 * The shared ops the transformer modules use (packages/flux/src/nn, math.ts), plus the two small pieces they lack:
 * building a Linear from a weights record, and SiLU.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '../nn/linear.ts';

export { attention, applyRope, rope, timestepEmbedding, type Rope } from '../math.ts';
export { layerNorm } from '../nn/layer-norm.ts';
// torch.nn.Linear over a checkpoint [out, in] weight or one transposed once to [in, out] (prepareWeights, streaming).
export { Linear };
export { rmsNorm } from '../nn/rms-norm.ts';

/** Every LayerNorm and RMSNorm of the FLUX transformer (layers.py: eps=1e-6). */
export const NORM_EPS = 1e-6;

/** A Linear from `${prefix}.weight` and `${prefix}.bias` [out] of a Weights record ('' = no prefix). */
export function linearFrom(w: Record<string, tf.Tensor>, prefix: string): Linear {
  const at = prefix ? `${prefix}.` : '';
  return new Linear(w[`${at}weight`] as tf.Tensor2D, (w[`${at}bias`] as tf.Tensor1D | undefined) ?? null);
}

const GELU_A = 2 * Math.sqrt(2 / Math.PI) * 0.044715;
const GELU_B = 2 * Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation (nn.GELU(approximate="tanh")): 0.5 x (1 + tanh(z)) with z = sqrt(2/pi) (x + 0.044715 x^3),
 * computed as x sigmoid(2z) (the same function: 0.5 (1 + tanh(z)) = sigmoid(2z)) in 6 element-wise ops instead of 9;
 * the MLP activations are the largest tensors of a block ([L, 12288] at full width). Differs from nn/gelu.ts by
 * float32 rounding only (parity tests: relative L2 <= 1e-5 against torch).
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.square(x), GELU_A), GELU_B)))));
}

/** torch.nn.functional.silu: x * sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}
