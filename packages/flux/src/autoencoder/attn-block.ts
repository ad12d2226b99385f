import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../nn/conv2d.ts';
import { GroupNorm } from '../nn/group-norm.ts';

/** Largest attention-score block materialised at once (elements): 2^26 floats = 256 MiB. */
const MAX_SCORE_ELEMENTS = 1 << 26;

/**
 * BFL autoencoder.py `AttnBlock`: single-head self-attention over the H*W positions, scale 1/sqrt(C),
 * q/k/v/proj_out as 1x1 convs (diffusers: `mid_block.attentions.0` with linear to_q/to_k/to_v/to_out.0); x + proj_out(attn).
 * NOTE: queries are processed in row blocks so the [HW, HW] score matrix never exceeds MAX_SCORE_ELEMENTS
 * (softmax is per query row, so this is exact); torch's SDPA does the equivalent with its fused kernels.
 */
export class AttnBlock {
  readonly norm: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly proj_out: Conv2d;

  readonly channels: number;
  constructor(
    channels: number,
    numGroups: number,
    eps = 1e-6,
  ) {
    this.channels = channels;
    this.norm = new GroupNorm(numGroups, channels, eps);
    this.q = new Conv2d(channels, channels, 1);
    this.k = new Conv2d(channels, channels, 1);
    this.v = new Conv2d(channels, channels, 1);
    this.proj_out = new Conv2d(channels, channels, 1);
  }

  /** x [B, H, W, C] -> [B, H, W, C] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const n = h * w;
    return tf.tidy(() => {
      const hn = this.norm.forward(x);
      const q = tf.reshape(this.q.forward(hn), [b, n, c]) as tf.Tensor3D; // [B,H,W,C] -> [B, HW, C]
      const k = tf.reshape(this.k.forward(hn), [b, n, c]) as tf.Tensor3D;
      const v = tf.reshape(this.v.forward(hn), [b, n, c]) as tf.Tensor3D;
      const scale = 1 / Math.sqrt(c);
      const rows = Math.max(1, Math.floor(MAX_SCORE_ELEMENTS / (n * b)));
      const attend = (qi: tf.Tensor3D): tf.Tensor3D =>
        tf.tidy(() => tf.matMul(tf.softmax(tf.mul(tf.matMul(qi, k, false, true), scale)) as tf.Tensor3D, v)); // [B, r, HW] @ [B, HW, C] -> [B, r, C]
      let out: tf.Tensor3D;
      if (rows >= n) {
        out = attend(q);
      } else {
        const parts: tf.Tensor3D[] = [];
        for (let r0 = 0; r0 < n; r0 += rows) {
          parts.push(attend(tf.slice(q, [0, r0, 0], [b, Math.min(rows, n - r0), c])));
        }
        out = tf.concat(parts, 1);
      }
      const o = tf.reshape(out, [b, h, w, c]) as tf.Tensor4D; // [B, HW, C] -> [B, H, W, C]
      return tf.add(x, this.proj_out.forward(o)) as tf.Tensor4D;
    });
  }
}
