/**
 * transformers `T5Attention` as the T5 encoder uses it: no 1/sqrt(d) scaling, no mask, plus the relative position
 * bias that only layer 0 owns (`relative_attention_bias` [num_buckets, n_heads]) and every layer reuses.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from './config.ts';
import { linear } from '../nn/linear.ts';
import { take, type ParamSpec, type Weights } from '../weights/spec.ts';

const F32_LOG = (x: number) => Math.fround(Math.log(Math.fround(x)));

/**
 * `T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets, max_distance)`, rel = key - query.
 * The log-spaced part is computed in float32 step by step as torch does (test/fixtures/text-encoders/t5-buckets).
 */
export function relativePositionBucket(rel: number, numBuckets = 32, maxDistance = 128): number {
  const half = Math.floor(numBuckets / 2);
  let bucket = rel > 0 ? half : 0;
  const n = Math.abs(rel);
  const maxExact = Math.floor(half / 2);
  if (n < maxExact) return bucket + n;
  const ratio = Math.fround(F32_LOG(n / maxExact) / Math.fround(Math.log(maxDistance / maxExact)));
  const large = maxExact + Math.trunc(Math.fround(ratio * (half - maxExact)));
  bucket += Math.min(large, half - 1);
  return bucket;
}

/**
 * `T5Attention.compute_bias(L, L)`: bias[0, h, i, j] = table[bucket(j - i), h].
 * table [num_buckets, H] -> [1, H, L, L].
 */
export function computeBias(table: tf.Tensor2D, length: number, config: T5Config): tf.Tensor4D {
  const buckets = new Int32Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < length; j++) {
      buckets[i * length + j] = relativePositionBucket(j - i, config.relativeAttentionNumBuckets, config.relativeAttentionMaxDistance);
    }
  }
  return tf.tidy(() => {
    const vals = tf.gather(table, tf.tensor1d(buckets, 'int32')); // [(L L), H]
    const H = table.shape[1];
    return tf.expandDims(tf.transpose(tf.reshape(vals, [length, length, H]), [2, 0, 1]), 0) as tf.Tensor4D; // [L, L, H] -> [1, H, L, L]
  });
}

/**
 * Fields are the checkpoint keys under `layer.0.SelfAttention.`: `q`, `k`, `v`, `o` (bias-free Linear weights).
 * Block 0's also holds `relative_attention_bias` (read by the encoder, see computeBias).
 */
export class T5Attention {
  readonly q: tf.Tensor2D;
  readonly k: tf.Tensor2D;
  readonly v: tf.Tensor2D;
  readonly o: tf.Tensor2D;

  static spec(c: T5Config, hasRelativeAttentionBias: boolean): ParamSpec {
    const inner = c.numHeads * c.dKv;
    const s: Record<string, readonly number[]> = {
      'q.weight': [inner, c.dModel],
      'k.weight': [inner, c.dModel],
      'v.weight': [inner, c.dModel],
      'o.weight': [c.dModel, inner],
    };
    if (hasRelativeAttentionBias) s['relative_attention_bias.weight'] = [c.relativeAttentionNumBuckets, c.numHeads];
    return s;
  }

  readonly config: T5Config;
  constructor(
    config: T5Config,
    w: Weights,
  ) {
    this.config = config;
    this.q = take<tf.Tensor2D>(w, 'q.weight');
    this.k = take<tf.Tensor2D>(w, 'k.weight');
    this.v = take<tf.Tensor2D>(w, 'v.weight');
    this.o = take<tf.Tensor2D>(w, 'o.weight');
  }

  /** x [B, L, d_model], positionBias [1, H, L, L] -> [B, L, d_model]. */
  forward(x: tf.Tensor, positionBias: tf.Tensor): tf.Tensor {
    const [B, L] = x.shape;
    const H = this.config.numHeads;
    const D = this.config.dKv;
    return tf.tidy(() => {
      const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, L, H, D]), [0, 2, 1, 3]); // [B, L, (H D)] -> [B, H, L, D]
      const q = heads(linear(x, this.q));
      const k = heads(linear(x, this.k));
      const v = heads(linear(x, this.v));
      const scores = tf.add(tf.matMul(q, k, false, true), positionBias); // [B, H, L, L], NO 1/sqrt(D) (T5)
      const ctx = tf.matMul(tf.softmax(scores), v); // [B, H, L, D]
      const merged = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [B, L, H * D]); // [B, H, L, D] -> [B, L, (H D)]
      return linear(merged, this.o);
    });
  }
}
