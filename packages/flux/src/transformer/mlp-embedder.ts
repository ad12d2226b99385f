import type * as tf from '@tensorflow/tfjs-core';
import { linearFrom, silu, type Linear } from './ops.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

/** BFL MLPEmbedder (layers.py:52-60): in_layer -> SiLU -> out_layer. */
export class MLPEmbedder {
  readonly in_layer: Linear;
  readonly out_layer: Linear;

  static spec(inDim: number, hiddenDim: number): ParamSpec {
    return { ...linearSpec('in_layer', inDim, hiddenDim), ...linearSpec('out_layer', hiddenDim, hiddenDim) };
  }

  constructor(w: Weights) {
    this.in_layer = linearFrom(w, 'in_layer');
    this.out_layer = linearFrom(w, 'out_layer');
  }

  // x [B, in] -> [B, hidden]
  forward(x: tf.Tensor): tf.Tensor {
    const h = silu(this.in_layer.forward(x));
    const out = this.out_layer.forward(h);
    h.dispose();
    return out;
  }
}
