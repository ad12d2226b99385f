import * as tf from '@tensorflow/tfjs-core';
import type { AutoEncoderParams } from './config.ts';
import { Conv2d } from '../nn/conv2d.ts';
import { GroupNorm } from '../nn/group-norm.ts';
import { AttnBlock } from './attn-block.ts';
import { Downsample } from './downsample.ts';
import { ResnetBlock, swish } from './resnet-block.ts';

/** One encoder level: `down.{i}.block.{j}` and, on every level but the last, `down.{i}.downsample`. */
export interface EncoderLevel {
  readonly block: ResnetBlock[];
  readonly downsample: Downsample | null;
}

/** `mid.block_1`, `mid.attn_1`, `mid.block_2` (shared by Encoder and Decoder). */
export interface MidBlock {
  readonly block_1: ResnetBlock;
  readonly attn_1: AttnBlock;
  readonly block_2: ResnetBlock;
}

export function makeMid(channels: number, groups: number): MidBlock {
  return {
    block_1: new ResnetBlock(channels, channels, groups),
    attn_1: new AttnBlock(channels, groups),
    block_2: new ResnetBlock(channels, channels, groups),
  };
}

/** Applies f to h and disposes h unless it is `keep` (the caller's input): frees each stage as soon as it is used. */
export function step(h: tf.Tensor4D, keep: tf.Tensor, f: (x: tf.Tensor4D) => tf.Tensor4D): tf.Tensor4D {
  const next = f(h);
  if (h !== keep) h.dispose();
  return next;
}

/**
 * BFL autoencoder.py `Encoder`: conv_in; per level num_res_blocks ResnetBlocks (ch*in_ch_mult[i] -> ch*ch_mult[i]),
 * Downsample on all but the last; mid (block_1, attn_1, block_2); norm_out, swish, conv_out -> 2*z_channels (mean | logvar).
 */
export class Encoder {
  readonly conv_in: Conv2d;
  readonly down: EncoderLevel[] = [];
  readonly mid: MidBlock;
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  readonly params: AutoEncoderParams;
  constructor(params: AutoEncoderParams) {
    this.params = params;
    const { ch, chMult, numResBlocks, inChannels, zChannels, normNumGroups: g } = params;
    this.conv_in = new Conv2d(inChannels, ch, 3, 1, 1);
    const inChMult = [1, ...chMult];
    let blockIn = ch;
    for (let i = 0; i < chMult.length; i++) {
      blockIn = ch * inChMult[i];
      const blockOut = ch * chMult[i];
      const block: ResnetBlock[] = [];
      for (let j = 0; j < numResBlocks; j++) {
        block.push(new ResnetBlock(blockIn, blockOut, g));
        blockIn = blockOut;
      }
      this.down.push({ block, downsample: i !== chMult.length - 1 ? new Downsample(blockIn) : null });
    }
    this.mid = makeMid(blockIn, g);
    this.norm_out = new GroupNorm(g, blockIn);
    this.conv_out = new Conv2d(blockIn, 2 * zChannels, 3, 1, 1);
  }

  /**
   * x [B, H, W, in_channels] -> [B, H/2^(L-1), W/2^(L-1), 2*z_channels]. `onLevel(k, L + 1)` follows each down level
   * and the mid block.
   */
  forward(x: tf.Tensor4D, onLevel?: (done: number, total: number) => void): tf.Tensor4D {
    const total = this.down.length + 1;
    let h = this.conv_in.forward(x);
    for (const [i, level] of this.down.entries()) {
      for (const block of level.block) h = step(h, x, (t) => block.forward(t));
      if (level.downsample) h = step(h, x, (t) => level.downsample!.forward(t));
      onLevel?.(i + 1, total);
    }
    h = step(h, x, (t) => this.mid.block_1.forward(t));
    h = step(h, x, (t) => this.mid.attn_1.forward(t));
    h = step(h, x, (t) => this.mid.block_2.forward(t));
    onLevel?.(total, total);
    return step(h, x, (t) => tf.tidy(() => this.conv_out.forward(swish(this.norm_out.forward(t)))));
  }
}
