/**
 * Typed, frozen configs of the FLUX.1 models, and parsers for the `config.json` of a diffusers / transformers folder.
 *
 * Field names follow the BFL reference (`FluxParams`, `AutoEncoderParams` in black-forest-labs/flux) and transformers
 * (`T5Config`, `CLIPTextConfig`), in camelCase. A parser fills absent fields with the defaults of the class that reads
 * that config.json in Python (as `from_pretrained` does), checks types and invariants, and throws a FluxError that names
 * the file and the field.
 */
import { FluxError } from '@flux-ts/core';

// ---------------------------------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------------------------------

/** black-forest-labs/flux src/flux/model.py `FluxParams`. */
export interface FluxParams {
  readonly inChannels: number;
  readonly outChannels: number;
  /** CLIP pooled width (diffusers `pooled_projection_dim`). */
  readonly vecInDim: number;
  /** T5 width (diffusers `joint_attention_dim`). */
  readonly contextInDim: number;
  readonly hiddenSize: number;
  readonly mlpRatio: number;
  readonly numHeads: number;
  /** Double-stream blocks (diffusers `num_layers`). */
  readonly depth: number;
  /** Single-stream blocks (diffusers `num_single_layers`). */
  readonly depthSingleBlocks: number;
  /** RoPE dims per position axis; they sum to the head dim. */
  readonly axesDim: readonly number[];
  readonly theta: number;
  readonly qkvBias: boolean;
  /** dev: a guidance embedder (`guidance_in`); schnell: none. */
  readonly guidanceEmbed: boolean;
}

export type FluxVariant = 'schnell' | 'dev';

function freeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(o);
}

/** https://github.com/black-forest-labs/flux/blob/802fb47/src/flux/util.py#L361-L391 (configs["flux-schnell"]) */
export const FLUX_SCHNELL: FluxParams = freeze({
  inChannels: 64,
  outChannels: 64,
  vecInDim: 768,
  contextInDim: 4096,
  hiddenSize: 3072,
  mlpRatio: 4.0,
  numHeads: 24,
  depth: 19,
  depthSingleBlocks: 38,
  axesDim: [16, 56, 56],
  theta: 10_000,
  qkvBias: true,
  guidanceEmbed: false,
});

/** https://github.com/black-forest-labs/flux/blob/802fb47/src/flux/util.py#L299-L317 (configs["flux-dev"]) */
export const FLUX_DEV: FluxParams = freeze({ ...FLUX_SCHNELL, axesDim: [16, 56, 56], guidanceEmbed: true });

export function fluxVariantParams(variant: FluxVariant): FluxParams {
  return variant === 'dev' ? FLUX_DEV : FLUX_SCHNELL;
}

export function headDim(p: FluxParams): number {
  return p.hiddenSize / p.numHeads;
}

export function mlpHiddenDim(p: FluxParams): number {
  return Math.trunc(p.hiddenSize * p.mlpRatio);
}

/** The constructor invariants of BFL's `Flux` (model.py:36-41) plus positivity. */
export function validateFluxParams(p: FluxParams, source = 'transformer config'): FluxParams {
  for (const k of ['inChannels', 'outChannels', 'vecInDim', 'contextInDim', 'hiddenSize', 'numHeads', 'depth', 'depthSingleBlocks'] as const) {
    positiveInt(p[k], k, source, k === 'depth' || k === 'depthSingleBlocks');
  }
  if (p.hiddenSize % p.numHeads !== 0) {
    throw configError(source, `hidden size ${p.hiddenSize} is not divisible by ${p.numHeads} heads`);
  }
  const sum = p.axesDim.reduce((a, b) => a + b, 0);
  if (sum !== headDim(p)) {
    throw configError(source, `RoPE axes dims [${p.axesDim.join(', ')}] sum to ${sum}, but the head dim is ${headDim(p)} (hidden ${p.hiddenSize} / ${p.numHeads} heads)`);
  }
  return p;
}

// diffusers models/transformers/transformer_flux.py FluxTransformer2DModel.__init__ defaults.
const DIFFUSERS_TRANSFORMER_DEFAULTS = {
  patch_size: 1,
  in_channels: 64,
  out_channels: null,
  num_layers: 19,
  num_single_layers: 38,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56],
};

/**
 * `transformer/config.json` of a diffusers folder (FluxTransformer2DModel) -> FluxParams.
 * diffusers fixes mlp_ratio 4, theta 10000 and qkv bias; patch_size must be 1 (the 2x2 patching happens in packing).
 */
export function fluxParamsFromDiffusers(json: unknown, source = 'transformer/config.json'): FluxParams {
  const c = configObject(json, source);
  const get = reader(c, DIFFUSERS_TRANSFORMER_DEFAULTS, source);
  const patch = get.int('patch_size');
  if (patch !== 1) throw configError(source, `"patch_size" is ${patch}; FLUX.1 transformers use 1`);
  const inChannels = get.int('in_channels');
  const out = c.out_channels ?? null;
  const heads = get.int('num_attention_heads');
  return validateFluxParams(
    freeze({
      inChannels,
      outChannels: out === null ? inChannels : get.int('out_channels'),
      vecInDim: get.int('pooled_projection_dim'),
      contextInDim: get.int('joint_attention_dim'),
      hiddenSize: heads * get.int('attention_head_dim'),
      mlpRatio: 4.0,
      numHeads: heads,
      depth: get.int('num_layers', true),
      depthSingleBlocks: get.int('num_single_layers', true),
      axesDim: get.intArray('axes_dims_rope'),
      theta: 10_000,
      qkvBias: true,
      guidanceEmbed: get.bool('guidance_embeds'),
    }),
    source,
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// Autoencoder
// ---------------------------------------------------------------------------------------------------------------------

/** black-forest-labs/flux src/flux/modules/autoencoder.py `AutoEncoderParams`, plus what diffusers' AutoencoderKL adds. */
export interface AutoEncoderParams {
  readonly resolution: number;
  readonly inChannels: number;
  readonly ch: number;
  readonly outCh: number;
  /** Channel multiplier per level (diffusers `block_out_channels` = ch * chMult). */
  readonly chMult: readonly number[];
  /** Resnets per encoder level (the decoder has one more; diffusers `layers_per_block`). */
  readonly numResBlocks: number;
  /** Latent channels (diffusers `latent_channels`). */
  readonly zChannels: number;
  readonly scaleFactor: number;
  readonly shiftFactor: number;
  /** GroupNorm groups (BFL hard-codes 32). */
  readonly normNumGroups: number;
  /** diffusers only: 1x1 convs around the latent; FLUX has none (BFL's AutoEncoder never does). */
  readonly useQuantConv: boolean;
  readonly usePostQuantConv: boolean;
}

/** https://github.com/black-forest-labs/flux/blob/802fb47/src/flux/util.py#L380-L390 (ae_params, same for schnell and dev) */
export const FLUX_VAE: AutoEncoderParams = freeze({
  resolution: 256,
  inChannels: 3,
  ch: 128,
  outCh: 3,
  chMult: [1, 2, 4, 4],
  numResBlocks: 2,
  zChannels: 16,
  scaleFactor: 0.3611,
  shiftFactor: 0.1159,
  normNumGroups: 32,
  useQuantConv: false,
  usePostQuantConv: false,
});

export function blockOutChannels(p: AutoEncoderParams): number[] {
  return p.chMult.map((m) => p.ch * m);
}

export function validateAutoEncoderParams(p: AutoEncoderParams, source = 'vae config'): AutoEncoderParams {
  for (const k of ['inChannels', 'ch', 'outCh', 'numResBlocks', 'zChannels', 'normNumGroups'] as const) positiveInt(p[k], k, source);
  if (p.chMult.length === 0) throw configError(source, 'needs at least one level (block_out_channels / ch_mult is empty)');
  for (const c of blockOutChannels(p)) {
    if (c % p.normNumGroups !== 0) throw configError(source, `${c} channels are not divisible into ${p.normNumGroups} GroupNorm groups`);
  }
  return p;
}

// diffusers models/autoencoders/autoencoder_kl.py AutoencoderKL.__init__ defaults.
const DIFFUSERS_VAE_DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'],
  up_block_types: ['UpDecoderBlock2D'],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** `vae/config.json` of a diffusers folder (AutoencoderKL) -> AutoEncoderParams. */
export function autoEncoderParamsFromDiffusers(json: unknown, source = 'vae/config.json'): AutoEncoderParams {
  const c = configObject(json, source);
  const get = reader(c, DIFFUSERS_VAE_DEFAULTS, source);
  const boc = get.intArray('block_out_channels');
  if (boc.length === 0) throw configError(source, '"block_out_channels" is empty');
  const ch = boc[0];
  const chMult = boc.map((b) => b / ch);
  if (!chMult.every(Number.isInteger)) {
    throw configError(source, `"block_out_channels" [${boc.join(', ')}] are not multiples of the first (${ch})`);
  }
  const down = get.stringArray('down_block_types');
  const up = get.stringArray('up_block_types');
  if (down.length !== boc.length || down.some((t) => t !== 'DownEncoderBlock2D')) {
    throw configError(source, `"down_block_types" must be ${boc.length}x "DownEncoderBlock2D" (one per block_out_channels entry), got ${JSON.stringify(down)}`);
  }
  if (up.length !== boc.length || up.some((t) => t !== 'UpDecoderBlock2D')) {
    throw configError(source, `"up_block_types" must be ${boc.length}x "UpDecoderBlock2D" (one per block_out_channels entry), got ${JSON.stringify(up)}`);
  }
  if (!get.bool('mid_block_add_attention')) throw configError(source, '"mid_block_add_attention" is false; the FLUX autoencoder has a mid-block attention');
  const act = get.string('act_fn');
  if (act !== 'silu') throw configError(source, `"act_fn" is ${JSON.stringify(act)}; only "silu" is supported`);
  return validateAutoEncoderParams(
    freeze({
      resolution: get.int('sample_size'),
      inChannels: get.int('in_channels'),
      ch,
      outCh: get.int('out_channels'),
      chMult,
      numResBlocks: get.int('layers_per_block'),
      zChannels: get.int('latent_channels'),
      scaleFactor: get.number('scaling_factor'),
      shiftFactor: c.shift_factor == null ? 0 : get.number('shift_factor'),
      normNumGroups: get.int('norm_num_groups'),
      useQuantConv: get.bool('use_quant_conv'),
      usePostQuantConv: get.bool('use_post_quant_conv'),
    }),
    source,
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// T5 encoder
// ---------------------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------------------
// CLIP text encoder
// ---------------------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------------------------------

export class ConfigError extends FluxError {
  constructor(source: string, message: string) {
    super('INVALID_CONFIG', `${source}: ${message}`);
    this.name = 'ConfigError';
  }
}

function configError(source: string, message: string): ConfigError {
  return new ConfigError(source, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function configObject(json: unknown, source: string): Record<string, unknown> {
  if (!isObject(json)) throw configError(source, 'must be a JSON object');
  return json;
}

function positiveInt(v: number, name: string, source: string, allowZero = false): void {
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) {
    throw configError(source, `${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
}

/** Typed access to config fields, falling back to the Python class defaults for absent (or null) fields. */
function reader(c: Record<string, unknown>, defaults: Record<string, unknown>, source: string) {
  const value = (k: string): unknown => (c[k] ?? defaults[k]);
  const fail = (k: string, want: string): never => {
    throw configError(source, `"${k}" must be ${want}, got ${JSON.stringify(value(k))}`);
  };
  return {
    int(k: string, allowZero = false): number {
      const v = value(k);
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) fail(k, allowZero ? 'a non-negative integer' : 'a positive integer');
      return v as number;
    },
    number(k: string): number {
      const v = value(k);
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(k, 'a number');
      return v as number;
    },
    bool(k: string): boolean {
      const v = value(k);
      if (typeof v !== 'boolean') fail(k, 'true or false');
      return v as boolean;
    },
    string(k: string): string {
      const v = value(k);
      if (typeof v !== 'string') fail(k, 'a string');
      return v as string;
    },
    intArray(k: string): number[] {
      const v = value(k);
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x > 0)) fail(k, 'an array of positive integers');
      return [...(v as number[])];
    },
    stringArray(k: string): string[] {
      const v = value(k);
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail(k, 'an array of strings');
      return [...(v as string[])];
    },
  };
}
