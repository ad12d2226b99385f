/**
 * transformers `CLIPAttention` (eager): softmax(q k^T * head_dim^-0.5 + mask) v. Fields: `q_proj`, `k_proj`,
 * `v_proj`, `out_proj` (Linear with bias), under `encoder.layers.{i}.self_attn.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from './config.ts';
import { linearFrom, type Linear } from '../nn/linear.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

export class CLIPAttention {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  static spec(c: ClipTextConfig): ParamSpec {
    const h = c.hiddenSize;
    return { ...linearSpec('k_proj', h, h), ...linearSpec('v_proj', h, h), ...linearSpec('q_proj', h, h), ...linearSpec('out_proj', h, h) };
  }

  readonly config: ClipTextConfig;
  constructor(
    config: ClipTextConfig,
    w: Weights,
  ) {
    this.config = config;
    this.q_proj = linearFrom(w, 'q_proj');
    this.k_proj = linearFrom(w, 'k_proj');
    this.v_proj = linearFrom(w, 'v_proj');
    this.out_proj = linearFrom(w, 'out_proj');
  }

  /** x [B, L, C], additive mask [L, L] (causal) -> [B, L, C]. */
  forward(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    const [B, L, C] = x.shape;
    const H = this.config.numAttentionHeads;
    const D = C / H;
    const scale = D ** -0.5;
    return tf.tidy(() => {
      const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, L, H, D]), [0, 2, 1, 3]); // [B, L, (H D)] -> [B, H, L, D]
      const q = heads(this.q_proj.forward(x));
      const k = heads(this.k_proj.forward(x));
      const v = heads(this.v_proj.forward(x));
      // as eager_attention_forward: matmul first, then * scaling, then + mask
      const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask); // [B, H, L, L]
      const ctx = tf.matMul(tf.softmax(scores), v); // [B, H, L, D]
      return this.out_proj.forward(tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [B, L, C])); // -> [B, L, (H D)]
    });
  }
}
