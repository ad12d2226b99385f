/**
 * transformers `T5Block` of the encoder: `layer[0]` = T5LayerSelfAttention (x + SelfAttention(layer_norm(x))),
 * `layer[1]` = T5LayerFF. Keys under `encoder.block.{i}.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from './config.ts';
import { T5Attention } from './t5-attention.ts';
import { T5LayerFF } from './t5-layer-ff.ts';
import { T5LayerNorm } from './t5-layer-norm.ts';
import { prefixed, scope, take, type ParamSpec, type Weights } from '../weights/spec.ts';

export class T5LayerSelfAttention {
  readonly SelfAttention: T5Attention;
  readonly layer_norm: T5LayerNorm;

  static spec(c: T5Config, hasRelativeAttentionBias: boolean): ParamSpec {
    return { ...prefixed('SelfAttention.', T5Attention.spec(c, hasRelativeAttentionBias)), ...T5LayerNorm.spec('layer_norm', c) };
  }

  constructor(config: T5Config, w: Weights) {
    this.SelfAttention = new T5Attention(config, scope(w, 'SelfAttention.'));
    this.layer_norm = new T5LayerNorm(take<tf.Tensor1D>(w, 'layer_norm.weight'), config.layerNormEpsilon);
  }

  /** x [B, L, d_model] -> [B, L, d_model]. */
  forward(x: tf.Tensor, positionBias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.SelfAttention.forward(this.layer_norm.forward(x), positionBias)));
  }
}

export class T5Block {
  readonly layer: [T5LayerSelfAttention, T5LayerFF];

  /** Block `i`'s keys relative to `encoder.block.{i}.` (only block 0 owns the relative position bias table). */
  static spec(c: T5Config, i: number): ParamSpec {
    return { ...prefixed('layer.0.', T5LayerSelfAttention.spec(c, i === 0)), ...prefixed('layer.1.', T5LayerFF.spec(c)) };
  }

  /** `w`: the block's tensors keyed relative to `encoder.block.{i}.` (`layer.0.SelfAttention.q.weight`, ...). */
  constructor(config: T5Config, w: Weights) {
    this.layer = [new T5LayerSelfAttention(config, scope(w, 'layer.0.')), new T5LayerFF(config, scope(w, 'layer.1.'))];
  }

  /** x [B, L, d_model], positionBias [1, H, L, L] -> [B, L, d_model]. */
  forward(x: tf.Tensor, positionBias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.layer[1].forward(this.layer[0].forward(x, positionBias)));
  }
}
