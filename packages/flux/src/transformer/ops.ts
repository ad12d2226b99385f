/**
 * The shared ops the transformer modules use (packages/flux/src/nn, math.ts), plus SiLU.
 */
import * as tf from '@tensorflow/tfjs-core';

export { attention, applyRope, rope, timestepEmbedding, type Rope } from '../math.ts';
export { geluTanh } from '../nn/gelu.ts';
export { layerNorm } from '../nn/layer-norm.ts';
export { Linear, linearFrom } from '../nn/linear.ts';
export { rmsNorm } from '../nn/rms-norm.ts';

/** Every LayerNorm and RMSNorm of the FLUX transformer (layers.py: eps=1e-6). */
export const NORM_EPS = 1e-6;

/** torch.nn.functional.silu: x * sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}
