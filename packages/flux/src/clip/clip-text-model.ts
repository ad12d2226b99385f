/**
 * transformers `CLIPTextModel` (transformers 5 keys: `embeddings.*`, `encoder.layers.{i}.*`, `final_layer_norm.*`),
 * run as FLUX runs it: causal mask, no padding mask, over the full padded length. Outputs `last_hidden_state` and
 * `pooler_output` = the row at the first `eos_token_id` (legacy configs with eos_token_id 2, FLUX.1's among them:
 * the row at argmax(ids), i.e. the first highest id), as CLIPTextTransformer.forward.
 *
 * Weights come one layer at a time from a TextEncoderWeights source; token and position embedding rows are
 * gathered on the host.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from '../transformer/config.ts';
import { layerNorm } from '../nn/layer-norm.ts';
import { flattenIds, scope, type TextEncoderWeights } from '../text-encoders/token-ids.ts';
import { clipActivation } from './clip-mlp.ts';
import { CLIPEncoderLayer, clipLayerKeys } from './clip-encoder-layer.ts';

/** torch.finfo(float32).min: what transformers adds at masked positions. */
const MASK_MIN = -3.4028234663852886e38;

export interface ClipTextOutput {
  lastHiddenState: tf.Tensor3D; // [B, L, C]
  pooledOutput: tf.Tensor2D; // [B, C]
}

export interface ClipForwardOptions {
  /** Called with each layer's output [B, L, C] (owned by the model: read it, do not dispose it). */
  onLayer?: (index: number, hidden: tf.Tensor3D) => void | Promise<void>;
}

/** The pooled row per batch row (CLIPTextTransformer.forward). */
export function clipPoolIndices(flat: Int32Array, B: number, L: number, eosTokenId: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    let idx = 0;
    if (eosTokenId === 2) {
      // legacy: argmax(ids), first maximum
      for (let i = 1; i < L; i++) if (flat[b * L + i] > flat[b * L + idx]) idx = i;
    } else {
      // first eos; torch's argmax of an all-false row is 0
      const i = flat.subarray(b * L, (b + 1) * L).indexOf(eosTokenId);
      idx = i < 0 ? 0 : i;
    }
    out.push(idx);
  }
  return out;
}

export class CLIPTextModel {
  constructor(
    readonly config: ClipTextConfig,
    readonly weights: TextEncoderWeights,
  ) {
    clipActivation(config.hiddenAct);
  }

  /** CLIPTextEmbeddings: token_embedding(ids) + position_embedding(0..L-1), rows gathered on the host. */
  async embed(flat: Int32Array, B: number, L: number): Promise<tf.Tensor3D> {
    const C = this.config.hiddenSize;
    const tok = await this.weights.rows('embeddings.token_embedding.weight', flat);
    const pos = await this.weights.rows('embeddings.position_embedding.weight', Int32Array.from({ length: L }, (_, i) => i));
    return tf.tidy(() => tf.add(tf.tensor3d(tok, [B, L, C]), tf.tensor3d(pos, [1, L, C])) as tf.Tensor3D);
  }

  /** input ids [B][L] (padded, L <= max_position_embeddings) -> last_hidden_state and pooler_output. */
  async forward(ids: readonly (readonly number[])[], opts: ClipForwardOptions = {}): Promise<ClipTextOutput> {
    const c = this.config;
    const { B, L, flat } = flattenIds(ids, c.vocabSize, c.maxPositionEmbeddings);
    let h = await this.embed(flat, B, L); // [B, L, C]
    const causal = new Float32Array(L * L);
    for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) causal[i * L + j] = MASK_MIN;
    const mask = tf.tensor2d(causal, [L, L]); // [L, L], broadcast over [B, H]
    try {
      for (let i = 0; i < c.numHiddenLayers; i++) {
        const w = await this.weights.load(clipLayerKeys(i));
        try {
          const next = new CLIPEncoderLayer(c, scope(w, `encoder.layers.${i}.`)).forward(h, mask) as tf.Tensor3D;
          h.dispose();
          h = next;
        } finally {
          this.weights.release(w);
        }
        if (opts.onLayer) await opts.onLayer(i, h);
      }
      const w = await this.weights.load(['final_layer_norm.weight', 'final_layer_norm.bias']);
      try {
        const rows = clipPoolIndices(flat, B, L, c.eosTokenId).map((idx, b) => b * L + idx);
        return tf.tidy(() => {
          const last = layerNorm(h, c.layerNormEps, w['final_layer_norm.weight'] as tf.Tensor1D, w['final_layer_norm.bias'] as tf.Tensor1D) as tf.Tensor3D;
          const pooled = tf.gather(tf.reshape(last, [B * L, c.hiddenSize]), tf.tensor1d(rows, 'int32')) as tf.Tensor2D; // [(B L), C] -> [B, C]
          return { lastHiddenState: last, pooledOutput: pooled };
        });
      } finally {
        this.weights.release(w);
      }
    } finally {
      h.dispose();
      mask.dispose();
    }
  }
}
