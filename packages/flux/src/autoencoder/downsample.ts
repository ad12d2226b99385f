import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../nn/conv2d.ts';

/**
 * BFL autoencoder.py `Downsample`: pad right and bottom by one (torch pad (0, 1, 0, 1)), then conv3x3 stride 2, no padding.
 * (diffusers `Downsample2D` with padding=0 does the same.)
 */
export class Downsample {
  readonly conv: Conv2d;

  readonly channels: number;
  constructor(channels: number) {
    this.channels = channels;
    this.conv = new Conv2d(channels, channels, 3, 2, 0);
  }

  /** x [B, H, W, C] -> [B, floor((H-2)/2)+1, floor((W-2)/2)+1, C] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.conv.forward(tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])));
  }
}
