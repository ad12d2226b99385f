import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../nn/conv2d.ts';
import { GroupNorm } from '../nn/group-norm.ts';

/** BFL autoencoder.py `swish`: x * sigmoid(x) (torch SiLU). */
export function swish(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * BFL autoencoder.py `ResnetBlock` (diffusers `ResnetBlock2D` without time embedding):
 * h = conv2(swish(norm2(conv1(swish(norm1(x)))))); x + h, with x through a 1x1 `nin_shortcut` when in != out.
 */
export class ResnetBlock {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly nin_shortcut: Conv2d | null;

  readonly inChannels: number;
  readonly outChannels: number;
  constructor(
    inChannels: number,
    outChannels: number,
    numGroups: number,
    eps = 1e-6,
  ) {
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.norm1 = new GroupNorm(numGroups, inChannels, eps);
    this.conv1 = new Conv2d(inChannels, outChannels, 3, 1, 1);
    this.norm2 = new GroupNorm(numGroups, outChannels, eps);
    this.conv2 = new Conv2d(outChannels, outChannels, 3, 1, 1);
    this.nin_shortcut = inChannels !== outChannels ? new Conv2d(inChannels, outChannels, 1) : null;
  }

  /** x [B, H, W, in] -> [B, H, W, out] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    // Each intermediate is freed as soon as the next one exists (peak: max(5 in, in + 5 out) maps, see autoencoder/memory.ts).
    return tf.tidy(() => {
      const free = <T extends tf.Tensor>(next: T, used: tf.Tensor): T => (used.dispose(), next);
      let h: tf.Tensor4D = this.norm1.forward(x);
      h = free(swish(h), h);
      h = free(this.conv1.forward(h), h);
      h = free(this.norm2.forward(h), h);
      h = free(swish(h), h);
      h = free(this.conv2.forward(h), h);
      const skip = this.nin_shortcut ? this.nin_shortcut.forward(x) : x;
      return tf.add(skip, h) as tf.Tensor4D;
    });
  }
}
