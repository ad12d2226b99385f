import * as tf from '@tensorflow/tfjs-core';
import { attention, linearFrom, type Linear, type Rope } from './ops.ts';
import { QKNorm } from './qk-norm.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

/** "B L (K H D) -> K B H L D" with K = 3: qkv [B, L, 3*H*D] -> q, k, v [B, H, L, D]. */
export function splitQkv(qkv: tf.Tensor, numHeads: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
  return tf.tidy(() => {
    const [b, l, n] = qkv.shape as [number, number, number];
    const d = n / 3 / numHeads;
    const parts = tf.split(qkv, 3, -1).map(
      (t) => tf.transpose(tf.reshape(t, [b, l, numHeads, d]), [0, 2, 1, 3]) as tf.Tensor4D, // [B,L,(H D)] -> [B,H,L,D]
    );
    return parts as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
  });
}

/** BFL SelfAttention (layers.py:87-103): fields qkv, norm (QKNorm), proj. */
export class SelfAttention {
  readonly qkv: Linear;
  readonly norm: QKNorm;
  readonly proj: Linear;

  static spec(prefix: string, dim: number, numHeads: number, qkvBias: boolean): ParamSpec {
    return {
      ...linearSpec(`${prefix}.qkv`, dim, 3 * dim, qkvBias),
      ...QKNorm.spec(`${prefix}.norm`, dim / numHeads),
      ...linearSpec(`${prefix}.proj`, dim, dim),
    };
  }

  readonly num_heads: number;
  constructor(
    w: Weights,
    prefix: string,
    num_heads: number,
  ) {
    this.num_heads = num_heads;
    this.qkv = linearFrom(w, `${prefix}.qkv`);
    this.norm = new QKNorm(w, `${prefix}.norm`);
    this.proj = linearFrom(w, `${prefix}.proj`);
  }

  /** x [B, L, dim] -> normalised q, k and v, each [B, H, L, D] (the part the double block shares). */
  qkvHeads(x: tf.Tensor): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    return tf.tidy(() => {
      const [q, k, v] = splitQkv(this.qkv.forward(x), this.num_heads);
      const [qn, kn] = this.norm.forward(q, k);
      return [qn, kn, v];
    });
  }

  // x [B, L, dim] -> [B, L, dim]
  forward(x: tf.Tensor, pe: Rope, headChunk?: number): tf.Tensor {
    return tf.tidy(() => {
      const [q, k, v] = this.qkvHeads(x);
      return this.proj.forward(attention(q, k, v, pe, { headChunk }));
    });
  }
}
