import * as tf from '@tensorflow/tfjs-core';
import type { AutoEncoderParams } from './config.ts';
import { Conv2d } from '../nn/conv2d.ts';
import { GroupNorm } from '../nn/group-norm.ts';
import { makeMid, step, type MidBlock } from './encoder.ts';
import { ResnetBlock, swish } from './resnet-block.ts';
import { Upsample } from './upsample.ts';

/** One decoder level: `up.{i}.block.{j}` (num_res_blocks + 1) and, on every level but 0, `up.{i}.upsample`. */
export interface DecoderLevel {
  readonly block: ResnetBlock[];
  readonly upsample: Upsample | null;
}

/**
 * BFL autoencoder.py `Decoder`: conv_in z_channels -> ch*ch_mult[-1]; mid; levels L-1 .. 0 with num_res_blocks + 1
 * ResnetBlocks each (-> ch*ch_mult[i]) and an Upsample on all but level 0; norm_out, swish, conv_out -> out_ch.
 * `up[i]` is indexed by level as in BFL (diffusers stores them reversed: up_blocks[L-1-i]).
 */
export class Decoder {
  readonly conv_in: Conv2d;
  readonly mid: MidBlock;
  readonly up: DecoderLevel[];
  readonly norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  readonly params: AutoEncoderParams;
  constructor(params: AutoEncoderParams) {
    this.params = params;
    const { ch, chMult, numResBlocks, outCh, zChannels, normNumGroups: g } = params;
    const levels = chMult.length;
    let blockIn = ch * chMult[levels - 1];
    this.conv_in = new Conv2d(zChannels, blockIn, 3, 1, 1);
    this.mid = makeMid(blockIn, g);
    const up: DecoderLevel[] = new Array(levels);
    for (let i = levels - 1; i >= 0; i--) {
      const blockOut = ch * chMult[i];
      const block: ResnetBlock[] = [];
      for (let j = 0; j < numResBlocks + 1; j++) {
        block.push(new ResnetBlock(blockIn, blockOut, g));
        blockIn = blockOut;
      }
      up[i] = { block, upsample: i !== 0 ? new Upsample(blockIn) : null };
    }
    this.up = up;
    this.norm_out = new GroupNorm(g, blockIn);
    this.conv_out = new Conv2d(blockIn, outCh, 3, 1, 1);
  }

  /**
   * z [B, h, w, z_channels] -> [B, h*2^(L-1), w*2^(L-1), out_ch]. `onLevel(k, L + 1)` follows the mid block and each
   * up level.
   */
  forward(z: tf.Tensor4D, onLevel?: (done: number, total: number) => void): tf.Tensor4D {
    const total = this.up.length + 1;
    let h = this.conv_in.forward(z);
    h = step(h, z, (t) => this.mid.block_1.forward(t));
    h = step(h, z, (t) => this.mid.attn_1.forward(t));
    h = step(h, z, (t) => this.mid.block_2.forward(t));
    onLevel?.(1, total);
    for (let i = this.up.length - 1; i >= 0; i--) {
      const level = this.up[i];
      for (const block of level.block) h = step(h, z, (t) => block.forward(t));
      if (level.upsample) h = step(h, z, (t) => level.upsample!.forward(t));
      onLevel?.(this.up.length - i + 1, total);
    }
    return step(h, z, (t) => tf.tidy(() => this.conv_out.forward(swish(this.norm_out.forward(t)))));
  }
}
