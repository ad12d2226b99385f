import type * as tf from '@tensorflow/tfjs-core';
import { rmsNorm } from '../nn/rms-norm.ts';

/**
 * transformers `T5LayerNorm`: weight * x * rsqrt(mean(x^2) + eps), variance in float32, no mean, no bias.
 * Field: `weight` [d_model].
 */
export class T5LayerNorm {
  constructor(
    readonly weight: tf.Tensor1D,
    readonly eps: number,
  ) {}

  forward(x: tf.Tensor): tf.Tensor {
    return rmsNorm(x, this.weight, this.eps); // [..., C] -> [..., C]
  }
}
