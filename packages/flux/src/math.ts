/**
 * Pure tensor functions of BFL flux `src/flux/math.py` and `timestep_embedding` (modules/layers.py),
 * https://github.com/black-forest-labs/flux/blob/802fb47/src/flux/math.py
 *
 * NOTE: BFL's `rope` returns 2x2 rotation matrices [..., D/2, 2, 2]; here a rope is the pair
 * { cos, sin } of shape [..., D/2] (the matrix is [[cos, -sin], [sin, cos]]), and the rotation is
 * applied without complex numbers or 2x2 matmuls.
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMulIn, type Precision } from './runtime/bf16.ts';

/** Rotary position embedding: angles' cos and sin, [..., L, D/2] (for attention: [B, 1, L, D/2]). */
export interface Rope {
  cos: tf.Tensor;
  sin: tf.Tensor;
}

/**
 * BFL `rope(pos, dim, theta)`: omega_k = theta^(-2k/dim), k < dim/2; angle = pos * omega.
 * pos [..., L] -> { cos, sin } [..., L, dim/2]. omega is rounded to float32 step by step as torch does.
 */
export function rope(pos: tf.Tensor, dim: number, theta: number): Rope {
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) throw new Error(`rope: dim must be a positive even integer, got ${dim}`);
  const half = dim / 2;
  const omega = new Float32Array(half);
  for (let k = 0; k < half; k++) {
    const scale = Math.fround((2 * k) / dim); // arange(0, dim, 2) / dim in float32
    omega[k] = 1 / Math.fround(Math.pow(theta, scale)); // 1 / theta**scale, stored as float32
  }
  return tf.tidy(() => {
    const angles = tf.mul(tf.expandDims(tf.cast(pos, 'float32'), -1), tf.tensor1d(omega)); // [..., L, 1] * [D/2] -> [..., L, D/2]
    return { cos: tf.cos(angles), sin: tf.sin(angles) };
  });
}

/**
 * Interleaved tables for x' = x * C + swap(x) * S, swap exchanging each pair (2j, 2j+1):
 * C = (cos_j, cos_j), S = (-sin_j, sin_j). [..., D/2] -> [..., D].
 */
function ropeTables(freqs: Rope): { c: tf.Tensor; s: tf.Tensor } {
  return tf.tidy(() => {
    const shape = [...freqs.cos.shape.slice(0, -1), 2 * freqs.cos.shape[freqs.cos.rank - 1]];
    const c = tf.reshape(tf.stack([freqs.cos, freqs.cos], -1), shape); // [..., D/2, 2] -> [..., D]
    const s = tf.reshape(tf.stack([tf.neg(freqs.sin), freqs.sin], -1), shape);
    return { c, s };
  });
}

/** x [B, H, L, D] rotated pairwise; c, s broadcast to it ([B, 1, L, D]). */
function rotate(x: tf.Tensor, c: tf.Tensor, s: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1];
    if (c.shape[c.rank - 1] !== d) {
      throw new Error(`applyRope: rope covers ${c.shape[c.rank - 1] / 2} pairs but the head dim is ${d}`);
    }
    // swap pairs: [B, H, L, D] -> [(B H L D/2), 2], reverse the pair -> back to [B, H, L, D]
    const swapped = tf.reshape(tf.reverse(tf.reshape(x, [-1, 2]), 1), x.shape);
    // out0 = cos x0 - sin x1, out1 = sin x0 + cos x1 (same products and sums as BFL apply_rope)
    return tf.add(tf.mul(x, c), tf.mul(swapped, s));
  });
}

/** BFL `apply_rope(xq, xk, freqs_cis)`: xq, xk [B, H, L, D]; freqs { cos, sin } [B, 1, L, D/2]. */
export function applyRope(xq: tf.Tensor, xk: tf.Tensor, freqs: Rope): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const { c, s } = ropeTables(freqs);
    return [rotate(xq, c, s), rotate(xk, c, s)];
  });
}

export interface AttentionOptions {
  /**
   * Compute this many heads at a time (scores are [B, headChunk, Lq, Lk] instead of [B, H, Lq, Lk]).
   * The result is identical; only the peak memory changes. Default: all heads at once.
   */
  headChunk?: number;
  /** The two products (q k^T and p v) in bf16, softmax in float32; default fp32. */
  precision?: Precision;
}

/**
 * BFL `attention(q, k, v, pe)`: RoPE on q and k (when pe is given), softmax(q k^T / sqrt(D)) v, no mask.
 * q [B, H, Lq, D], k, v [B, H, Lk, D], pe { cos, sin } [B, 1, L, D/2] -> [B, Lq, H*D] ("B H L D -> B L (H D)").
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, pe?: Rope | null, opts: AttentionOptions = {}): tf.Tensor3D {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) {
    throw new Error(`attention: q, k, v must be [B, H, L, D], got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2];
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D || v.shape[0] !== B || v.shape[1] !== H || v.shape[2] !== Lk) {
    throw new Error(`attention: shapes do not match: q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  }
  const Dv = v.shape[3] as number;
  const chunk = opts.headChunk ?? H;
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`attention: headChunk must be a positive integer, got ${chunk}`);
  const scale = 1 / Math.sqrt(D);

  return tf.tidy(() => {
    const tables = pe ? ropeTables(pe) : null;
    const cq = tables ? tf.mul(tables.c, scale) : null;
    const sq = tables ? tf.mul(tables.s, scale) : null;
    const parts: tf.Tensor[] = [];
    for (let h0 = 0; h0 < H; h0 += chunk) {
      const n = Math.min(chunk, H - h0);
      // each chunk in its own tidy, so its [B, n, Lq, Lk] scores are freed before the next one
      parts.push(tf.tidy(() => {
        const pick = (x: tf.Tensor) => (n === H ? x : tf.slice(x, [0, h0, 0, 0], [-1, n, -1, -1])); // [B, n, L, D]
        let qc = pick(q);
        let kc = pick(k);
        const vc = pick(v);
        if (tables) {
          // the 1/sqrt(D) of the scores is folded into q's (small) rotation tables: one pass less over q
          qc = rotate(qc, cq!, sq!);
          kc = rotate(kc, tables.c, tables.s);
        } else qc = tf.mul(qc, scale);
        const p = opts.precision ?? 'fp32';
        const scores = matMulIn(p, qc, kc, false, true); // [B, n, Lq, Lk]
        const out = matMulIn(p, tf.softmax(scores), vc); // [B, n, Lq, Dv]
        return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, Lq, n * Dv]); // [B, n, Lq, Dv] -> [B, Lq, (n Dv)]
      }));
    }
    // head chunks are contiguous head ranges, so concatenating (n Dv) blocks gives (H Dv)
    return (parts.length === 1 ? parts[0] : tf.concat(parts, -1)) as tf.Tensor3D;
  });
}

/**
 * BFL `timestep_embedding(t, dim, max_period, time_factor)`: t *= timeFactor; half = dim // 2;
 * freqs_k = exp(-ln(maxPeriod) k / half); [cos(t freqs), sin(t freqs)] (cos first), zero-padded when dim is odd.
 * t [N] (t in [0, 1] for FLUX) -> [N, dim]. freqs are rounded to float32 as torch computes them.
 */
export function timestepEmbedding(t: tf.Tensor, dim: number, maxPeriod = 10000, timeFactor = 1000): tf.Tensor2D {
  if (t.rank !== 1) throw new Error(`timestepEmbedding: t must be 1-D [N], got [${t.shape}]`);
  if (!Number.isInteger(dim) || dim < 2) throw new Error(`timestepEmbedding: dim must be an integer >= 2, got ${dim}`);
  const half = Math.floor(dim / 2);
  const negLog = Math.fround(-Math.log(maxPeriod));
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = Math.exp(Math.fround(Math.fround(negLog * k) / half));
  return tf.tidy(() => {
    const args = tf.mul(tf.expandDims(tf.mul(tf.cast(t, 'float32'), timeFactor), 1), tf.expandDims(tf.tensor1d(freqs), 0)); // [N, 1] * [1, half]
    const parts = [tf.cos(args), tf.sin(args)];
    if (dim % 2) parts.push(tf.zeros([t.shape[0], 1]));
    return tf.concat(parts, 1) as tf.Tensor2D;
  });
}
