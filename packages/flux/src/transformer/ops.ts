/**
 * The shared ops the transformer modules use (packages/flux/src/nn, math.ts), plus the two small pieces they lack:
 * building a Linear from a weights record, and SiLU.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from '../nn/linear.ts';

export { attention, applyRope, rope, timestepEmbedding, type Rope } from '../math.ts';
export { geluTanh } from '../nn/gelu.ts';
export { layerNorm } from '../nn/layer-norm.ts';
export { rmsNorm } from '../nn/rms-norm.ts';
export { Linear };

/** Every LayerNorm and RMSNorm of the FLUX transformer (layers.py: eps=1e-6). */
export const NORM_EPS = 1e-6;

/** nn.Linear from `${prefix}.weight` [out, in] and `${prefix}.bias` [out] of a Weights record ('' = no prefix). */
export function linearFrom(w: Record<string, tf.Tensor>, prefix: string): Linear {
  const at = prefix ? `${prefix}.` : '';
  return new Linear(w[`${at}weight`] as tf.Tensor2D, (w[`${at}bias`] as tf.Tensor1D | undefined) ?? null);
}

/** torch.nn.functional.silu: x * sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}
