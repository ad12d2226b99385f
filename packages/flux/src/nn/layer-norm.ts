import * as tf from '@tensorflow/tfjs-core';

/**
 * torch.nn.LayerNorm over the last axis: (x - mean) / sqrt(var + eps) [* weight + bias].
 * Without weight/bias it is LayerNorm(elementwise_affine=False), as in every FLUX transformer norm (eps 1e-6).
 * x [..., C]; weight, bias [C] (both or neither).
 */
export function layerNorm(x: tf.Tensor, eps: number, weight?: tf.Tensor1D | null, bias?: tf.Tensor1D | null): tf.Tensor {
  const c = x.shape[x.rank - 1];
  if (!weight !== !bias) throw new Error('layerNorm: give both weight and bias, or neither');
  if (weight && (weight.shape[0] !== c || bias!.shape[0] !== c)) {
    throw new Error(`layerNorm: weight [${weight.shape.join(', ')}] / bias [${bias!.shape.join(', ')}] do not match input [${x.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true); // [..., 1]
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true); // biased, as torch
    const y = tf.mul(xc, tf.rsqrt(tf.add(variance, eps)));
    return weight ? tf.add(tf.mul(y, weight), bias!) : y;
  });
}
