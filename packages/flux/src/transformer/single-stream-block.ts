import * as tf from '@tensorflow/tfjs-core';
import type { BlockDims } from './double-stream-block.ts';
import { Modulation, modulate } from './modulation.ts';
import { attention, geluTanh, layerNorm, linearFrom, NORM_EPS, type Linear, type Rope } from './ops.ts';
import { QKNorm } from './qk-norm.ts';
import { splitQkv } from './self-attention.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

/**
 * BFL SingleStreamBlock (layers.py:194-239): one stream over [txt; img] with fused linear1 (qkv | mlp in) and
 * linear2 (attention proj | mlp out). Built from one block's weights (keys relative to `single_blocks.{i}.`).
 */
export class SingleStreamBlock {
  readonly linear1: Linear;
  readonly linear2: Linear;
  readonly norm: QKNorm;
  readonly modulation: Modulation;
  readonly mlp_hidden_dim: number;

  static spec(d: Pick<BlockDims, 'hidden_size' | 'num_heads' | 'mlp_ratio'>): ParamSpec {
    const h = d.hidden_size;
    const mlpHidden = Math.trunc(h * d.mlp_ratio);
    return {
      ...linearSpec('linear1', h, 3 * h + mlpHidden),
      ...linearSpec('linear2', h + mlpHidden, h),
      ...QKNorm.spec('norm', h / d.num_heads),
      ...Modulation.spec('modulation', h, false),
    };
  }

  readonly dims: Pick<BlockDims, 'hidden_size' | 'num_heads' | 'mlp_ratio'>;
  constructor(
    dims: Pick<BlockDims, 'hidden_size' | 'num_heads' | 'mlp_ratio'>,
    w: Weights,
  ) {
    this.dims = dims;
    this.linear1 = linearFrom(w, 'linear1');
    this.linear2 = linearFrom(w, 'linear2');
    this.norm = new QKNorm(w, 'norm');
    this.modulation = new Modulation(w, 'modulation', false);
    this.mlp_hidden_dim = Math.trunc(dims.hidden_size * dims.mlp_ratio);
  }

  // x [B, L, hidden], vec [B, hidden] -> [B, L, hidden]
  forward(x: tf.Tensor, vec: tf.Tensor, pe: Rope, headChunk?: number): tf.Tensor {
    return tf.tidy(() => {
      const [mod] = this.modulation.forward(vec);
      const xMod = modulate(layerNorm(x, NORM_EPS), mod);
      const [qkv, mlp] = tf.split(this.linear1.forward(xMod), [3 * this.dims.hidden_size, this.mlp_hidden_dim], -1);
      const [q, k, v] = splitQkv(qkv!, this.dims.num_heads); // each [B,H,L,D]
      const [qn, kn] = this.norm.forward(q, k);
      const attn = attention(qn, kn, v, pe, { headChunk }); // [B, L, hidden]
      const output = this.linear2.forward(tf.concat([attn, geluTanh(mlp!)], 2)); // [B, L, hidden + mlp] -> [B, L, hidden]
      return tf.add(x, tf.mul(mod.gate, output));
    });
  }
}
