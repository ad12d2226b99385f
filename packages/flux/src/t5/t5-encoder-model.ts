/**
 * transformers `T5EncoderModel` (T5 v1.1 encoder, FLUX's text_encoder_2), run as FLUX runs it: no attention mask
 * over the full padded length; output `last_hidden_state`.
 *
 * Weights come one block at a time from a TextEncoderWeights source (streamed: read, converted, uploaded, used,
 * disposed; or resident), and the `shared` embedding rows are gathered on the host, so the [vocab, d_model] table
 * is never on the device.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from '../transformer/config.ts';
import { computeBias } from './t5-attention.ts';
import { t5BlockKeys, T5Block } from './t5-block.ts';
import { t5Activation } from './t5-layer-ff.ts';
import { T5LayerNorm } from './t5-layer-norm.ts';
import { flattenIds, scope, type TextEncoderWeights } from '../text-encoders/token-ids.ts';

export interface T5ForwardOptions {
  /** Called with each block's output [B, L, d_model] (owned by the model: read it, do not dispose it). */
  onBlock?: (index: number, hidden: tf.Tensor3D) => void | Promise<void>;
}

export class T5EncoderModel {
  constructor(
    readonly config: T5Config,
    readonly weights: TextEncoderWeights,
  ) {
    t5Activation(config.denseActFn); // unsupported activation: fail at construction, not mid-encode
  }

  /** `shared(ids)`: ids [B][L] -> [B, L, d_model], gathered on the host. */
  async embed(ids: readonly (readonly number[])[]): Promise<tf.Tensor3D> {
    const { B, L, flat } = flattenIds(ids, this.config.vocabSize);
    const rows = await this.weights.rows('shared.weight', flat);
    return tf.tensor3d(rows, [B, L, this.config.dModel]);
  }

  /** input ids [B][L] (padded, one length) -> last_hidden_state [B, L, d_model]. */
  async forward(ids: readonly (readonly number[])[], opts: T5ForwardOptions = {}): Promise<tf.Tensor3D> {
    const c = this.config;
    let h = await this.embed(ids); // [B, L, d_model]
    const L = h.shape[1];
    let bias: tf.Tensor4D | null = null;
    try {
      for (let i = 0; i < c.numLayers; i++) {
        const w = await this.weights.load(t5BlockKeys(c, i));
        this.weights.prefetch?.(i + 1 < c.numLayers ? t5BlockKeys(c, i + 1) : ['encoder.final_layer_norm.weight']); // overlaps this block
        try {
          const bw = scope(w, `encoder.block.${i}.`);
          // Only block 0 owns the table; its bias [1, H, L, L] is reused by every block.
          if (i === 0) bias = computeBias(bw['layer.0.SelfAttention.relative_attention_bias.weight'] as tf.Tensor2D, L, c);
          const next = new T5Block(c, bw).forward(h, bias!) as tf.Tensor3D;
          h.dispose();
          h = next;
        } finally {
          this.weights.release(w);
        }
        if (opts.onBlock) await opts.onBlock(i, h);
      }
      const w = await this.weights.load(['encoder.final_layer_norm.weight']);
      try {
        const out = new T5LayerNorm(w['encoder.final_layer_norm.weight'] as tf.Tensor1D, c.layerNormEpsilon).forward(h) as tf.Tensor3D;
        return out;
      } finally {
        this.weights.release(w);
      }
    } finally {
      h.dispose();
      bias?.dispose();
    }
  }
}
