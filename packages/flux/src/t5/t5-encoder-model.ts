/**
 * transformers `T5EncoderModel` (T5 v1.1 encoder, FLUX's text_encoder_2), run as FLUX runs it: no attention mask
 * over the full padded length; output `last_hidden_state`.
 *
 * Weights come one block at a time from CheckpointWeights (streamed: read, converted, uploaded, used, disposed;
 * or resident), and the `shared` embedding rows are gathered on the host, so the [vocab, d_model] table is never
 * on the device.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from './config.ts';
import { flattenIds } from '../text-encoders/token-ids.ts';
import type { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { prefixed, take, type ParamSpec } from '../weights/spec.ts';
import { computeBias } from './t5-attention.ts';
import { T5Block } from './t5-block.ts';
import { t5Activation } from './t5-layer-ff.ts';
import { T5LayerNorm } from './t5-layer-norm.ts';

export interface T5ForwardOptions {
  /** Called with each block's output [B, L, d_model] (owned by the model: read it, do not dispose it). */
  onBlock?: (index: number, hidden: tf.Tensor3D) => void | Promise<void>;
}

export class T5EncoderModel {
  /** Every key of the encoder (transformers' names) with its shape: the T5 key table. */
  static spec(c: T5Config): ParamSpec {
    const spec: Record<string, readonly number[]> = { 'shared.weight': [c.vocabSize, c.dModel] };
    for (let i = 0; i < c.numLayers; i++) Object.assign(spec, prefixed(`encoder.block.${i}.`, T5Block.spec(c, i)));
    return { ...spec, ...T5LayerNorm.spec('encoder.final_layer_norm', c) };
  }

  /** `weights`: opened for this config (t5/load.ts). */
  readonly config: T5Config;
  readonly weights: CheckpointWeights;
  constructor(
    config: T5Config,
    weights: CheckpointWeights,
  ) {
    this.config = config;
    this.weights = weights;
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
        const prefix = `encoder.block.${i}.`;
        const w = await this.weights.get(prefix);
        this.weights.prefetch(i + 1 < c.numLayers ? `encoder.block.${i + 1}.` : 'encoder.final_layer_norm.'); // overlaps this block
        try {
          // Only block 0 owns the table; its bias [1, H, L, L] is reused by every block.
          if (i === 0) bias = computeBias(take<tf.Tensor2D>(w, 'layer.0.SelfAttention.relative_attention_bias.weight'), L, c);
          const next = new T5Block(c, w).forward(h, bias!) as tf.Tensor3D;
          h.dispose();
          h = next;
        } finally {
          this.weights.release(prefix, w);
        }
        if (opts.onBlock) await opts.onBlock(i, h);
      }
      const w = await this.weights.get('encoder.final_layer_norm.');
      try {
        return new T5LayerNorm(take<tf.Tensor1D>(w, 'weight'), c.layerNormEpsilon).forward(h) as tf.Tensor3D;
      } finally {
        this.weights.release('encoder.final_layer_norm.', w);
      }
    } finally {
      h.dispose();
      bias?.dispose();
    }
  }
}
