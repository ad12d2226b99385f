import * as tf from '@tensorflow/tfjs-core';
import type { ParamLeaf } from './conv2d.ts';

/**
 * torch.nn.GroupNorm(numGroups, numChannels, eps, affine=True) on NHWC tensors:
 * per sample and group, (x - mean) / sqrt(var + eps) over (H, W, C/G), biased variance; then * weight + bias per channel.
 * x [B, H, W, C]; weight, bias [C].
 */
export function groupNorm(x: tf.Tensor4D, numGroups: number, eps: number, weight: tf.Tensor1D, bias: tf.Tensor1D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  if (c % numGroups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible into ${numGroups} groups`);
  return tf.tidy(() => {
    const xg = tf.reshape(x, [b, h * w, numGroups, c / numGroups]); // [B,H,W,C] -> [B, HW, G, C/G]
    const { mean, variance } = tf.moments(xg, [1, 3], true); // [B, 1, G, 1] each, two-pass (biased) variance
    // Same arithmetic as before, but each full-size intermediate is freed as soon as it is consumed, so at most two
    // of them are alive at once besides x (the VAE's peak memory is made of these; see autoencoder/memory.ts).
    const d = tf.sub(xg, mean);
    const xn = tf.mul(d, tf.rsqrt(tf.add(variance, eps)));
    d.dispose();
    const y = tf.reshape(xn, [b, h, w, c]); // [B, HW, G, C/G] -> [B, H, W, C]
    const yw = tf.mul(y, weight);
    xn.dispose();
    const out = tf.add(yw, bias) as tf.Tensor4D;
    yw.dispose();
    return out;
  });
}

/** GroupNorm layer whose fields are the checkpoint key segments (`weight`, `bias`). */
export class GroupNorm implements ParamLeaf {
  weight: tf.Tensor1D | null = null;
  bias: tf.Tensor1D | null = null;

  readonly numGroups: number;
  readonly numChannels: number;
  readonly eps: number;
  constructor(
    numGroups: number,
    numChannels: number,
    eps = 1e-6,
  ) {
    this.numGroups = numGroups;
    this.numChannels = numChannels;
    this.eps = eps;
    if (!Number.isInteger(numGroups) || numGroups < 1 || numChannels % numGroups !== 0) {
      throw new Error(`GroupNorm: ${numChannels} channels are not divisible into ${numGroups} groups`);
    }
  }

  get paramShapes(): Record<string, readonly number[]> {
    return { weight: [this.numChannels], bias: [this.numChannels] };
  }

  setParam(name: string, value: tf.Tensor): void {
    if (name !== 'weight' && name !== 'bias') throw new Error(`GroupNorm has no parameter ${name}`);
    if (value.shape.join() !== String(this.numChannels)) throw new Error(`GroupNorm ${name}: [${value.shape.join(', ')}] given, [${this.numChannels}] expected`);
    if (name === 'weight') this.weight = value as tf.Tensor1D;
    else this.bias = value as tf.Tensor1D;
  }

  /** x [B, H, W, C] -> [B, H, W, C] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (!this.weight || !this.bias) throw new Error('GroupNorm: weights not loaded');
    return groupNorm(x, this.numGroups, this.eps, this.weight, this.bias);
  }
}
