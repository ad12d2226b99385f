import type * as tf from '@tensorflow/tfjs-core';
import { NORM_EPS, rmsNorm } from './ops.ts';
import { take, type ParamSpec, type Weights } from '../weights/spec.ts';

/** BFL QKNorm (layers.py:75-84): separate RMSNorm (eps 1e-6, learned scale) for q and k, per head. */
export class QKNorm {
  readonly query_norm: { scale: tf.Tensor1D };
  readonly key_norm: { scale: tf.Tensor1D };

  static spec(prefix: string, headDim: number): ParamSpec {
    return { [`${prefix}.query_norm.scale`]: [headDim], [`${prefix}.key_norm.scale`]: [headDim] };
  }

  constructor(w: Weights, prefix: string) {
    this.query_norm = { scale: take<tf.Tensor1D>(w, `${prefix}.query_norm.scale`) };
    this.key_norm = { scale: take<tf.Tensor1D>(w, `${prefix}.key_norm.scale`) };
  }

  // q, k [B, H, L, D] -> normalised q, k
  forward(q: tf.Tensor4D, k: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    return [rmsNorm(q, this.query_norm.scale, NORM_EPS) as tf.Tensor4D, rmsNorm(k, this.key_norm.scale, NORM_EPS) as tf.Tensor4D];
  }
}
