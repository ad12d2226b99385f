import * as tf from '@tensorflow/tfjs-core';

/**
 * RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * scale, in float32.
 * BFL `RMSNorm` (QKNorm, eps 1e-6, weight key `scale`); T5's layer norm is the same formula (weight key `weight`).
 * x [..., C]; scale [C] or null for no scale.
 */
export function rmsNorm(x: tf.Tensor, scale: tf.Tensor1D | null, eps: number): tf.Tensor {
  const c = x.shape[x.rank - 1];
  if (scale && scale.shape[0] !== c) {
    throw new Error(`rmsNorm: scale [${scale.shape.join(', ')}] does not match input [${x.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const rrms = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)); // [..., 1]
    const y = tf.mul(x, rrms);
    return scale ? tf.mul(y, scale) : y;
  });
}
