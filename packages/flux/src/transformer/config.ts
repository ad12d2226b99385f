/**
 * The transformer's typed config: BFL's `FluxParams`, frozen per variant (permalinks), and read from a diffusers
 * `transformer/config.json` or, for a BFL single file that has no config, from its header's shapes.
 */
import { configError, configObject, freeze, positiveInt, reader } from '../shared/config-json.ts';

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

/**
 * A BFL single file's dims from its header's shapes (such a file has no config), as ComfyUI's `detect_unet_config`
 * and stable-diffusion.cpp read them: width and in/out channels from img_in / final_layer, context and vector dims
 * from txt_in / vector_in, depth from the block indices, heads from the QK-norm scale (the head dim), the MLP ratio
 * from the first MLP, qkv bias and guidance from the keys present. `shapes` are keyed without the file's prefix.
 * The RoPE axes cannot be told from shapes: FLUX.1's [16, 56, 56] for a head dim of 128, else `axesDim` (from a
 * config.json beside the file, or an option) is required.
 */
export function fluxParamsFromShapes(
  shapes: ReadonlyMap<string, { readonly shape: readonly number[] }>,
  opts: { axesDim?: readonly number[]; source?: string } = {},
): FluxParams {
  const source = opts.source ?? 'transformer checkpoint';
  const dim = (key: string, i: number): number => {
    const s = shapes.get(key)?.shape;
    if (!s || s[i] === undefined) throw configError(source, `has no ${key}: its dims cannot be read from the header; pass a diffusers config.json for it`);
    return s[i]!;
  };
  const count = (prefix: string) => {
    let n = 0;
    while ([...shapes.keys()].some((k) => k.startsWith(`${prefix}.${n}.`))) n++;
    return n;
  };
  const hiddenSize = dim('img_in.weight', 0);
  const depth = count('double_blocks');
  const depthSingleBlocks = count('single_blocks');
  const head = depth > 0 ? dim('double_blocks.0.img_attn.norm.query_norm.scale', 0) : dim('single_blocks.0.norm.query_norm.scale', 0);
  const mlpHidden = depth > 0 ? dim('double_blocks.0.img_mlp.0.weight', 0) : dim('single_blocks.0.linear1.weight', 0) - 3 * hiddenSize;
  const axesDim = opts.axesDim ?? (head === 128 ? FLUX_SCHNELL.axesDim : undefined);
  if (!axesDim) {
    throw configError(source, `has a head dim of ${head}, not FLUX.1's 128, so its RoPE axes cannot be told from its shapes; put the model's diffusers config.json (axes_dims_rope) beside it, or pass one`);
  }
  return validateFluxParams(
    freeze({
      inChannels: dim('img_in.weight', 1),
      outChannels: dim('final_layer.linear.weight', 0),
      vecInDim: dim('vector_in.in_layer.weight', 1),
      contextInDim: dim('txt_in.weight', 1),
      hiddenSize,
      mlpRatio: mlpHidden / hiddenSize,
      numHeads: hiddenSize / head,
      depth,
      depthSingleBlocks,
      axesDim: [...axesDim],
      theta: 10_000,
      qkvBias: depth === 0 || shapes.has('double_blocks.0.img_attn.qkv.bias'),
      guidanceEmbed: shapes.has('guidance_in.in_layer.weight'),
    }),
    source,
  );
}
