/** The CLIP text encoder's typed config (transformers `CLIPTextConfig`) and its config.json. */
import { configError, configObject, freeze, reader, isObject } from '../shared/config-json.ts';

/** transformers `CLIPTextConfig`. */
export interface ClipTextConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly projectionDim: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly hiddenAct: string;
  readonly layerNormEps: number;
  readonly bosTokenId: number;
  /** 2 in legacy configs (FLUX.1's): then the pooled row is at argmax(ids), see spec section 5. */
  readonly eosTokenId: number;
  readonly padTokenId: number;
}

/** openai/clip-vit-large-patch14 text model, as black-forest-labs/FLUX.1-schnell text_encoder/config.json. */
export const CLIP_L: ClipTextConfig = freeze({
  vocabSize: 49408,
  hiddenSize: 768,
  intermediateSize: 3072,
  projectionDim: 768,
  numHiddenLayers: 12,
  numAttentionHeads: 12,
  maxPositionEmbeddings: 77,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
  bosTokenId: 0,
  eosTokenId: 2,
  padTokenId: 1,
});

// transformers models/clip/configuration_clip.py CLIPTextConfig.__init__ defaults.
const CLIP_TEXT_DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
};

/** `text_encoder/config.json` (CLIPTextConfig, or a CLIPConfig with a "text_config") -> ClipTextConfig. */
export function clipTextConfigFromJson(json: unknown, source = 'text_encoder/config.json'): ClipTextConfig {
  let c = configObject(json, source);
  if (isObject(c.text_config)) c = c.text_config;
  const get = reader(c, CLIP_TEXT_DEFAULTS, source);
  const cfg: ClipTextConfig = freeze({
    vocabSize: get.int('vocab_size'),
    hiddenSize: get.int('hidden_size'),
    intermediateSize: get.int('intermediate_size'),
    projectionDim: get.int('projection_dim'),
    numHiddenLayers: get.int('num_hidden_layers'),
    numAttentionHeads: get.int('num_attention_heads'),
    maxPositionEmbeddings: get.int('max_position_embeddings'),
    hiddenAct: get.string('hidden_act'),
    layerNormEps: get.number('layer_norm_eps'),
    bosTokenId: get.int('bos_token_id', true),
    eosTokenId: get.int('eos_token_id', true),
    padTokenId: get.int('pad_token_id', true),
  });
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) {
    throw configError(source, `"hidden_size" ${cfg.hiddenSize} is not divisible by "num_attention_heads" ${cfg.numAttentionHeads}`);
  }
  return cfg;
}
