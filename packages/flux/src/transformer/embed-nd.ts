import * as tf from '@tensorflow/tfjs-core';
import { rope, type Rope } from './ops.ts';

/**
 * BFL EmbedND (layers.py:11-25): ids [B, L, n_axes] -> RoPE over the whole head dim, each axis i with
 * `rope(ids[..., i], axes_dim[i], theta)`, concatenated along the pair dim.
 * NOTE: returns {cos, sin} [B, 1, L, D/2] (math.ts's Rope) instead of BFL's [B, 1, L, D/2, 2, 2] rotation matrices.
 */
export class EmbedND {
  readonly dim: number;
  readonly theta: number;
  readonly axes_dim: readonly number[];
  constructor(
    dim: number,
    theta: number,
    axes_dim: readonly number[],
  ) {
    this.dim = dim;
    this.theta = theta;
    this.axes_dim = axes_dim;
  }

  forward(ids: tf.Tensor3D): Rope {
    const [b, l, nAxes] = ids.shape;
    if (nAxes !== this.axes_dim.length) {
      throw new Error(`EmbedND: ids have ${nAxes} axes, axes_dim has ${this.axes_dim.length}`);
    }
    return tf.tidy(() => {
      const axes = Array.from({ length: nAxes }, (_, i) => {
        const pos = tf.reshape(tf.slice(ids, [0, 0, i], [-1, -1, 1]), [b, l]); // ids[..., i] -> [B, L]
        return rope(pos, this.axes_dim[i]!, this.theta); // {cos, sin} [B, L, d_i/2]
      });
      const cos = tf.expandDims(tf.concat(axes.map((a) => a.cos), -1), 1); // [B, L, D/2] -> [B, 1, L, D/2]
      const sin = tf.expandDims(tf.concat(axes.map((a) => a.sin), -1), 1);
      return { cos, sin };
    });
  }
}
