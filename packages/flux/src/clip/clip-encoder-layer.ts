/**
 * transformers `CLIPEncoderLayer` (pre-LN): x + self_attn(layer_norm1(x)), then x + mlp(layer_norm2(x)).
 * Keys under `encoder.layers.{i}.`.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from './config.ts';
import { layerNorm } from '../nn/layer-norm.ts';
import { normSpec, prefixed, scope, take, type ParamSpec, type Weights } from '../weights/spec.ts';
import { CLIPAttention } from './clip-attention.ts';
import { CLIPMLP } from './clip-mlp.ts';

interface Norm {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}

export class CLIPEncoderLayer {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: Norm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: Norm;

  /** Keys relative to `encoder.layers.{i}.`. */
  static spec(c: ClipTextConfig): ParamSpec {
    return {
      ...prefixed('self_attn.', CLIPAttention.spec(c)),
      ...normSpec('layer_norm1', c.hiddenSize),
      ...prefixed('mlp.', CLIPMLP.spec(c)),
      ...normSpec('layer_norm2', c.hiddenSize),
    };
  }

  /** `w`: keys relative to `encoder.layers.{i}.`. */
  readonly config: ClipTextConfig;
  constructor(
    config: ClipTextConfig,
    w: Weights,
  ) {
    this.config = config;
    const norm = (n: string): Norm => ({ weight: take<tf.Tensor1D>(w, `${n}.weight`), bias: take<tf.Tensor1D>(w, `${n}.bias`) });
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
