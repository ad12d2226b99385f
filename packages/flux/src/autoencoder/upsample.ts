import * as tf from '@tensorflow/tfjs-core';
import { Conv2d } from '../nn/conv2d.ts';

/** BFL autoencoder.py `Upsample`: nearest-neighbour x2 (torch `interpolate(scale_factor=2, mode="nearest")`), then conv3x3 pad 1. */
export class Upsample {
  readonly conv: Conv2d;

  readonly channels: number;
  constructor(channels: number) {
    this.channels = channels;
    this.conv = new Conv2d(channels, channels, 3, 1, 1);
  }

  /** x [B, H, W, C] -> [B, 2H, 2W, C] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const [, h, w] = x.shape;
    return tf.tidy(() => {
      // source index floor(dst / 2), as torch's "nearest" for an exact factor 2
      const up = tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w], false, false);
      return this.conv.forward(up);
    });
  }
}
