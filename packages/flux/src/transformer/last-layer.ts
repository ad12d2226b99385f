import * as tf from '@tensorflow/tfjs-core';
import { layerNorm, linearFrom, NORM_EPS, silu, type Linear } from './ops.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

/**
 * BFL LastLayer (layers.py:242-253): shift, scale = adaLN_modulation(vec) (shift FIRST; diffusers stores the rows as
 * scale, shift and transformer/keys.ts swaps them); linear((1 + scale) LN(x) + shift).
 */
export class LastLayer {
  readonly linear: Linear;
  /** `nn.Sequential(SiLU, Linear)`: the Linear is index 1. */
  readonly adaLN_modulation: ['silu', Linear];

  static spec(hidden: number, outChannels: number): ParamSpec {
    return { ...linearSpec('linear', hidden, outChannels), ...linearSpec('adaLN_modulation.1', hidden, 2 * hidden) };
  }

  constructor(w: Weights) {
    this.linear = linearFrom(w, 'linear');
    this.adaLN_modulation = ['silu', linearFrom(w, 'adaLN_modulation.1')];
  }

  // x [B, L, hidden], vec [B, hidden] -> [B, L, out]
  forward(x: tf.Tensor, vec: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [shift, scale] = tf.split(this.adaLN_modulation[1].forward(silu(vec)), 2, 1); // [B, hidden] each
      const xm = tf.add(tf.mul(tf.add(1, tf.expandDims(scale!, 1)), layerNorm(x, NORM_EPS)), tf.expandDims(shift!, 1));
      return this.linear.forward(xm);
    });
  }
}
