/**
 * transformers `CLIPTextModel` (transformers 5 keys: `embeddings.*`, `encoder.layers.{i}.*`, `final_layer_norm.*`),
 * run as FLUX runs it: causal mask, no padding mask, over the full padded length. Outputs `last_hidden_state` and
 * `pooler_output` = the row at the first `eos_token_id` (legacy configs with eos_token_id 2, FLUX.1's among them:
 * the row at argmax(ids), i.e. the first highest id), as CLIPTextTransformer.forward.
 *
 * Weights come one layer at a time from CheckpointWeights; token and position embedding rows are gathered on the
 * host.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from './config.ts';
import { layerNorm } from '../nn/layer-norm.ts';
import { flattenIds } from '../text-encoders/token-ids.ts';
import type { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { normSpec, prefixed, take, type ParamSpec } from '../weights/spec.ts';
import { clipActivation } from './clip-mlp.ts';
import { CLIPEncoderLayer } from './clip-encoder-layer.ts';

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
  /** Every key of the text model (transformers 5 names, no `text_model.`) with its shape: the CLIP key table. */
  static spec(c: ClipTextConfig): ParamSpec {
    const spec: Record<string, readonly number[]> = {
      'embeddings.token_embedding.weight': [c.vocabSize, c.hiddenSize],
      'embeddings.position_embedding.weight': [c.maxPositionEmbeddings, c.hiddenSize],
    };
    for (let i = 0; i < c.numHiddenLayers; i++) Object.assign(spec, prefixed(`encoder.layers.${i}.`, CLIPEncoderLayer.spec(c)));
    return { ...spec, ...normSpec('final_layer_norm', c.hiddenSize) };
  }

  /** `weights`: opened for this config (clip/load.ts). */
  readonly config: ClipTextConfig;
  readonly weights: CheckpointWeights;
  constructor(
    config: ClipTextConfig,
    weights: CheckpointWeights,
  ) {
    this.config = config;
    this.weights = weights;
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
        const prefix = `encoder.layers.${i}.`;
        const w = await this.weights.get(prefix);
        this.weights.prefetch(i + 1 < c.numHiddenLayers ? `encoder.layers.${i + 1}.` : 'final_layer_norm.'); // overlaps this layer
        try {
          const next = new CLIPEncoderLayer(c, w).forward(h, mask) as tf.Tensor3D;
          h.dispose();
          h = next;
        } finally {
          this.weights.release(prefix, w);
        }
        if (opts.onLayer) await opts.onLayer(i, h);
      }
      const w = await this.weights.get('final_layer_norm.');
      try {
        const rows = clipPoolIndices(flat, B, L, c.eosTokenId).map((idx, b) => b * L + idx);
        return tf.tidy(() => {
          const last = layerNorm(h, c.layerNormEps, take<tf.Tensor1D>(w, 'weight'), take<tf.Tensor1D>(w, 'bias')) as tf.Tensor3D;
          const pooled = tf.gather(tf.reshape(last, [B * L, c.hiddenSize]), tf.tensor1d(rows, 'int32')) as tf.Tensor2D; // [(B L), C] -> [B, C]
          return { lastHiddenState: last, pooledOutput: pooled };
        });
      } finally {
        this.weights.release('final_layer_norm.', w);
      }
    } finally {
      h.dispose();
      mask.dispose();
    }
  }
}
