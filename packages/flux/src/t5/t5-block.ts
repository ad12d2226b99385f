/**
 * transformers `T5Block` of the encoder: `layer[0]` = T5LayerSelfAttention (x + SelfAttention(layer_norm(x))),
 * `layer[1]` = T5LayerFF. Keys under `encoder.block.{i}.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from '../transformer/config.ts';
import { T5Attention } from './t5-attention.ts';
import { T5LayerFF } from './t5-layer-ff.ts';
import { T5LayerNorm } from './t5-layer-norm.ts';
import { scope, type Weights } from '../text-encoders/token-ids.ts';

/** The checkpoint keys of block `i` (layer 0 also owns `relative_attention_bias`). */
export function t5BlockKeys(config: T5Config, i: number): string[] {
  const b = `encoder.block.${i}.layer`;
  const keys = ['q', 'k', 'v', 'o'].map((n) => `${b}.0.SelfAttention.${n}.weight`);
  if (i === 0) keys.push(`${b}.0.SelfAttention.relative_attention_bias.weight`);
  keys.push(`${b}.0.layer_norm.weight`);
  for (const n of config.isGatedAct ? ['wi_0', 'wi_1', 'wo'] : ['wi', 'wo']) keys.push(`${b}.1.DenseReluDense.${n}.weight`);
  keys.push(`${b}.1.layer_norm.weight`);
  return keys;
}

export class T5LayerSelfAttention {
  readonly SelfAttention: T5Attention;
  readonly layer_norm: T5LayerNorm;

  constructor(config: T5Config, w: Weights) {
    this.SelfAttention = new T5Attention(config, scope(w, 'SelfAttention.'));
    this.layer_norm = new T5LayerNorm(w['layer_norm.weight'] as tf.Tensor1D, config.layerNormEpsilon);
  }

  /** x [B, L, d_model] -> [B, L, d_model]. */
  forward(x: tf.Tensor, positionBias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.SelfAttention.forward(this.layer_norm.forward(x), positionBias)));
  }
}

export class T5Block {
  readonly layer: [T5LayerSelfAttention, T5LayerFF];

  /** `w`: the block's tensors keyed relative to `encoder.block.{i}.` (`layer.0.SelfAttention.q.weight`, ...). */
  constructor(config: T5Config, w: Weights) {
    this.layer = [new T5LayerSelfAttention(config, scope(w, 'layer.0.')), new T5LayerFF(config, scope(w, 'layer.1.'))];
  }

  /** x [B, L, d_model], positionBias [1, H, L, L] -> [B, L, d_model]. */
  forward(x: tf.Tensor, positionBias: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.layer[1].forward(this.layer[0].forward(x, positionBias)));
  }
}
