import type * as tf from '@tensorflow/tfjs-core';
import { rmsNorm } from '../nn/rms-norm.ts';
import type { T5Config } from './config.ts';
import type { ParamSpec } from '../weights/spec.ts';

/**
 * transformers `T5LayerNorm`: weight * x * rsqrt(mean(x^2) + eps), variance in float32, no mean, no bias.
 * Field: `weight` [d_model].
 */
export class T5LayerNorm {
  static spec(prefix: string, c: T5Config): ParamSpec {
    return { [`${prefix}.weight`]: [c.dModel] };
  }

  readonly weight: tf.Tensor1D;
  readonly eps: number;
  constructor(
    weight: tf.Tensor1D,
    eps: number,
  ) {
    this.weight = weight;
    this.eps = eps;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return rmsNorm(x, this.weight, this.eps); // [..., C] -> [..., C]
  }
}
