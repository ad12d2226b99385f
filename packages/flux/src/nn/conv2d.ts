import * as tf from '@tensorflow/tfjs-core';

/**
 * A layer that holds parameters: `paramShapes` names them (the last checkpoint key segment) with their checkpoint
 * shapes (its part of the model's spec); `setParam` takes one as the loader prepared it (weights/executor.ts: a
 * conv weight already [kh, kw, in, out]). The tensors stay owned by the loader's CheckpointWeights.
 */
export interface ParamLeaf {
  readonly paramShapes: Readonly<Record<string, readonly number[]>>;
  setParam(name: string, value: tf.Tensor): void;
}

export function isParamLeaf(v: unknown): v is ParamLeaf {
  return typeof v === 'object' && v !== null && 'paramShapes' in v && typeof (v as ParamLeaf).setParam === 'function';
}

/**
 * torch.nn.Conv2d(in, out, k, stride, padding) on NHWC tensors.
 * Checkpoint weight [out, in, kh, kw], held as tfjs' [kh, kw, in, out] (HWIO: the loader lays it out once).
 * Padding is symmetric, as torch's; asymmetric padding (the VAE Downsample) is done by the caller with tf.pad.
 */
export class Conv2d implements ParamLeaf {
  /** [kh, kw, in, out] */
  weight: tf.Tensor4D | null = null;
  /** [out] */
  bias: tf.Tensor1D | null = null;

  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: number;
  readonly stride: number;
  readonly padding: number;
  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number,
    stride = 1,
    padding = 0,
  ) {
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernelSize = kernelSize;
    this.stride = stride;
    this.padding = padding;
    for (const [k, v] of Object.entries({ inChannels, outChannels, kernelSize, stride })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`Conv2d: ${k} must be a positive integer, got ${v}`);
    }
    if (!Number.isInteger(padding) || padding < 0) throw new Error(`Conv2d: padding must be a non-negative integer, got ${padding}`);
  }

  get paramShapes(): Record<string, readonly number[]> {
    const k = this.kernelSize;
    return { weight: [this.outChannels, this.inChannels, k, k], bias: [this.outChannels] };
  }

  setParam(name: string, value: tf.Tensor): void {
    const k = this.kernelSize;
    const want = name === 'weight' ? [k, k, this.inChannels, this.outChannels] : name === 'bias' ? [this.outChannels] : null;
    if (!want) throw new Error(`Conv2d has no parameter ${name}`);
    if (value.shape.join() !== want.join()) throw new Error(`Conv2d ${name}: [${value.shape.join(', ')}] given, [${want.join(', ')}] expected`);
    if (name === 'weight') this.weight = value as tf.Tensor4D;
    else this.bias = value as tf.Tensor1D;
  }

  /** x [B, H, W, in] -> [B, H', W', out] */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    if (!this.weight || !this.bias) throw new Error('Conv2d: weights not loaded');
    if (x.shape[3] !== this.inChannels) {
      throw new Error(`Conv2d: input [${x.shape.join(', ')}] has ${x.shape[3]} channels, expected ${this.inChannels}`);
    }
    const { weight, bias, stride, padding: p, kernelSize: k } = this;
    return tf.tidy(() => {
      // 'same' with stride 1 and k = 2p + 1 is exactly torch's symmetric padding p; otherwise pad explicitly.
      let input = x;
      let pad: 'same' | 'valid' = 'valid';
      if (p > 0 && stride === 1 && k === 2 * p + 1) pad = 'same';
      else if (p > 0) input = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]);
      return tf.fused.conv2d({ x: input, filter: weight, bias, strides: stride, pad, dataFormat: 'NHWC' });
    });
  }
}
