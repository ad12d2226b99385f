/**
 * transformers `CLIPEncoderLayer` (pre-LN): x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).
 * Keys under `encoder.layers.{i}.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from '../transformer/config.ts';
import { layerNorm } from '../nn/layer-norm.ts';
import { scope, type Weights } from '../text-encoders/token-ids.ts';
import { CLIPAttention } from './clip-attention.ts';
import { CLIPMLP } from './clip-mlp.ts';

export function clipLayerKeys(i: number): string[] {
  const b = `encoder.layers.${i}`;
  const keys: string[] = [];
  for (const n of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'layer_norm1', 'mlp.fc1', 'mlp.fc2', 'layer_norm2']) {
    keys.push(`${b}.${n}.weight`, `${b}.${n}.bias`);
  }
  return keys;
}

interface Norm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

export class CLIPEncoderLayer {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: Norm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: Norm;

  /** `w`: keys relative to `encoder.layers.{i}.`. */
  constructor(
    readonly config: ClipTextConfig,
    w: Weights,
  ) {
    const norm = (n: string): Norm => ({ weight: w[`${n}.weight`] as tf.Tensor1D, bias: w[`${n}.bias`] as tf.Tensor1D });
    this.self_attn = new CLIPAttention(config, scope(w, 'self_attn.'));
    this.layer_norm1 = norm('layer_norm1');
    this.mlp = new CLIPMLP(config, scope(w, 'mlp.'));
    this.layer_norm2 = norm('layer_norm2');
  }

  /** x [B, L, C], mask [L, L] -> [B, L, C]. */
  forward(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    const eps = this.config.layerNormEps;
    return tf.tidy(() => {
      const h = tf.add(x, this.self_attn.forward(layerNorm(x, eps, this.layer_norm1.weight, this.layer_norm1.bias), mask));
      return tf.add(h, this.mlp.forward(layerNorm(h, eps, this.layer_norm2.weight, this.layer_norm2.bias)));
    });
  }
}
