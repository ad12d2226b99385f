/** The T5 encoder's typed config (transformers `T5Config`) and its config.json. */
import { configError, configObject, freeze, reader } from '../shared/config-json.ts';

/** transformers `T5Config` (encoder side). */
export interface T5Config {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly dKv: number;
  readonly dFf: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly relativeAttentionNumBuckets: number;
  readonly relativeAttentionMaxDistance: number;
  readonly layerNormEpsilon: number;
  /** e.g. "gated-gelu" (T5 v1.1: wi_0, wi_1, gelu_new) or "relu" (T5 v1.0: wi). */
  readonly feedForwardProj: string;
  /** `feed_forward_proj` starts with "gated-": two input projections wi_0 / wi_1. */
  readonly isGatedAct: boolean;
  /** Activation name as transformers resolves it ("gated-gelu" -> "gelu_new"). */
  readonly denseActFn: string;
}

/** google/t5-v1_1-xxl, as black-forest-labs/FLUX.1-schnell text_encoder_2/config.json. */
export const T5_XXL: T5Config = freeze({
  vocabSize: 32128,
  dModel: 4096,
  dKv: 64,
  dFf: 10240,
  numLayers: 24,
  numHeads: 64,
  relativeAttentionNumBuckets: 32,
  relativeAttentionMaxDistance: 128,
  layerNormEpsilon: 1e-6,
  feedForwardProj: 'gated-gelu',
  isGatedAct: true,
  denseActFn: 'gelu_new',
});

// transformers models/t5/configuration_t5.py T5Config.__init__ defaults.
const T5_DEFAULTS = {
  vocab_size: 32128,
  d_model: 512,
  d_kv: 64,
  d_ff: 2048,
  num_layers: 6,
  num_heads: 8,
  relative_attention_num_buckets: 32,
  relative_attention_max_distance: 128,
  layer_norm_epsilon: 1e-6,
  feed_forward_proj: 'relu',
};

/** `text_encoder_2/config.json` (T5Config) -> T5Config. */
export function t5ConfigFromJson(json: unknown, source = 'text_encoder_2/config.json'): T5Config {
  const c = configObject(json, source);
  const get = reader(c, T5_DEFAULTS, source);
  const ffp = get.string('feed_forward_proj');
  // configuration_t5.py: "gated-gelu" -> gated, act "gelu_new"; "relu" / "gelu" -> not gated.
  const parts = ffp.split('-');
  const isGatedAct = parts[0] === 'gated';
  if (parts.length > 2 || (parts.length === 2 && !isGatedAct)) {
    throw configError(source, `"feed_forward_proj" ${JSON.stringify(ffp)} is not of the form "{ACT_FN}" or "gated-{ACT_FN}", e.g. "gated-gelu"`);
  }
  const act = parts[parts.length - 1];
  return freeze({
    vocabSize: get.int('vocab_size'),
    dModel: get.int('d_model'),
    dKv: get.int('d_kv'),
    dFf: get.int('d_ff'),
    numLayers: get.int('num_layers'),
    numHeads: get.int('num_heads'),
    relativeAttentionNumBuckets: get.int('relative_attention_num_buckets'),
    relativeAttentionMaxDistance: get.int('relative_attention_max_distance'),
    layerNormEpsilon: get.number('layer_norm_epsilon'),
    feedForwardProj: ffp,
    isGatedAct,
    denseActFn: ffp === 'gated-gelu' ? 'gelu_new' : act,
  });
}
