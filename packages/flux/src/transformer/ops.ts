/**
 * The shared ops the transformer modules use (packages/flux/src/nn, math.ts), plus the two small pieces they lack:
 * building a Linear from a weights record, and SiLU.
 */
import * as tf from '@tensorflow/tfjs-core';
import { isPreTransposed } from './weights.ts';

export { attention, applyRope, rope, timestepEmbedding, type Rope } from '../math.ts';
export { layerNorm } from '../nn/layer-norm.ts';
export { rmsNorm } from '../nn/rms-norm.ts';

/** Every LayerNorm and RMSNorm of the FLUX transformer (layers.py: eps=1e-6). */
export const NORM_EPS = 1e-6;

/**
 * torch.nn.Linear, y = x W^T + b, over a weight either as in the checkpoint ([out, in], multiplied with transposeB)
 * or transposed once by prepareWeights ([in, out], a plain matMul: the fast path). Same values either way.
 */
export class Linear {
  readonly transposed: boolean;
  constructor(
    readonly weight: tf.Tensor2D,
    readonly bias: tf.Tensor1D | null = null,
  ) {
    this.transposed = isPreTransposed(weight);
  }

  get inFeatures(): number {
    return this.weight.shape[this.transposed ? 0 : 1];
  }

  get outFeatures(): number {
    return this.weight.shape[this.transposed ? 1 : 0];
  }

  // x [..., in] -> [..., out]
  forward(x: tf.Tensor): tf.Tensor {
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    if (x.shape[x.rank - 1] !== inF) throw new Error(`linear: input [${x.shape.join(', ')}] does not end in ${inF}`);
    return tf.tidy(() => {
      const x2 = tf.reshape(x, [-1, inF]); // [..., in] -> [N, in]
      // NOTE: the bias is a separate add, not tf.fused.matMul (its bias with transposeB is wrong on wasm, tfjs 4.22)
      const xw = tf.matMul(x2, this.weight, false, !this.transposed); // [N, in] x [in, out] -> [N, out]
      const y = this.bias ? tf.add(xw, this.bias) : xw;
      return tf.reshape(y, [...x.shape.slice(0, -1), outF]); // [N, out] -> [..., out]
    });
  }
}

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
