/**
 * The transformer's checkpoint layouts. Its keys are BFL's (`flux1-schnell.safetensors`), the field names of the
 * modules in this folder (`fluxParamSpec`); a diffusers `transformer/` (FluxTransformer2DModel) is read through the
 * one rename table below, the inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`
 * (loaders/single_file_utils.py): checked against checkpoints made by that converter and against the full-size key
 * lists of the real classes (test/transformer/keys.parity.test.ts).
 */
import type { FluxParams } from './config.ts';
import { mlpHiddenDim } from './config.ts';
import { fluxParamSpec } from './flux.ts';
import { expandRenames, identityRules, type CheckpointLayout, type ModuleRename } from '../weights/layout.ts';
import { WeightsError } from '../weights/validate.ts';

/** A checkpoint that does not match the transformer config (missing, unexpected or mis-shaped keys). */
export class TransformerWeightsError extends WeightsError {
  constructor(message: string) {
    super('TRANSFORMER_WEIGHTS', message);
    this.name = 'TransformerWeightsError';
  }
}

export type TransformerFormat = 'bfl-transformer' | 'diffusers-transformer';

const RENAMED = 'diffusers names the module differently';
const QKV = 'diffusers keeps q, k, v as separate Linears; BFL fuses them as one [(K H D), in] Linear';
const QK_NORM = 'QKNorm scale = diffusers RMSNorm weight';

/** The BFL module <- diffusers module table (one row per module, `{i}` expanded over the blocks). */
export function diffusersRenames(p: FluxParams): ModuleRename[] {
  const h = p.hiddenSize;
  const r = (model: string, checkpoint: string | string[], why = RENAMED, more: Partial<ModuleRename> = {}): ModuleRename => ({
    model,
    checkpoint: typeof checkpoint === 'string' ? [checkpoint] : checkpoint,
    why,
    ...more,
  });
  const rows: ModuleRename[] = [
    r('img_in', 'x_embedder'),
    r('txt_in', 'context_embedder'),
    r('time_in.in_layer', 'time_text_embed.timestep_embedder.linear_1'),
    r('time_in.out_layer', 'time_text_embed.timestep_embedder.linear_2'),
    r('vector_in.in_layer', 'time_text_embed.text_embedder.linear_1'),
    r('vector_in.out_layer', 'time_text_embed.text_embedder.linear_2'),
    r('guidance_in.in_layer', 'time_text_embed.guidance_embedder.linear_1'),
    r('guidance_in.out_layer', 'time_text_embed.guidance_embedder.linear_2'),
    r('final_layer.linear', 'proj_out'),
    r('final_layer.adaLN_modulation.1', 'norm_out.linear', 'diffusers AdaLayerNormContinuous chunks (scale, shift); BFL LastLayer chunks (shift, scale)', { op: 'swap_halves' }),
  ];
  for (let i = 0; i < p.depth; i++) {
    const b = `double_blocks.${i}`;
    const d = `transformer_blocks.${i}`;
    rows.push(
      r(`${b}.img_mod.lin`, `${d}.norm1.linear`),
      r(`${b}.txt_mod.lin`, `${d}.norm1_context.linear`),
      r(`${b}.img_attn.qkv`, ['to_q', 'to_k', 'to_v'].map((n) => `${d}.attn.${n}`), QKV, { op: 'concat', rows: [h, h, h] }),
      r(`${b}.txt_attn.qkv`, ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((n) => `${d}.attn.${n}`), QKV, { op: 'concat', rows: [h, h, h] }),
      r(`${b}.img_attn.norm.query_norm`, `${d}.attn.norm_q`, QK_NORM, { leaf: { scale: 'weight' } }),
      r(`${b}.img_attn.norm.key_norm`, `${d}.attn.norm_k`, QK_NORM, { leaf: { scale: 'weight' } }),
      r(`${b}.txt_attn.norm.query_norm`, `${d}.attn.norm_added_q`, QK_NORM, { leaf: { scale: 'weight' } }),
      r(`${b}.txt_attn.norm.key_norm`, `${d}.attn.norm_added_k`, QK_NORM, { leaf: { scale: 'weight' } }),
      r(`${b}.img_attn.proj`, `${d}.attn.to_out.0`),
      r(`${b}.txt_attn.proj`, `${d}.attn.to_add_out`),
      r(`${b}.img_mlp.0`, `${d}.ff.net.0.proj`),
      r(`${b}.img_mlp.2`, `${d}.ff.net.2`),
      r(`${b}.txt_mlp.0`, `${d}.ff_context.net.0.proj`),
      r(`${b}.txt_mlp.2`, `${d}.ff_context.net.2`),
    );
  }
  for (let i = 0; i < p.depthSingleBlocks; i++) {
    const b = `single_blocks.${i}`;
    const d = `single_transformer_blocks.${i}`;
    rows.push(
      r(`${b}.modulation.lin`, `${d}.norm.linear`),
      r(`${b}.linear1`, ['attn.to_q', 'attn.to_k', 'attn.to_v', 'proj_mlp'].map((n) => `${d}.${n}`),
        'BFL fuses q, k, v and the MLP input into linear1 (rows: q | k | v | mlp)', { op: 'concat', rows: [h, h, h, mlpHiddenDim(p)] }),
      r(`${b}.linear2`, `${d}.proj_out`, 'BFL linear2 = diffusers proj_out over cat(attn, mlp)'),
      r(`${b}.norm.query_norm`, `${d}.attn.norm_q`, QK_NORM, { leaf: { scale: 'weight' } }),
      r(`${b}.norm.key_norm`, `${d}.attn.norm_k`, QK_NORM, { leaf: { scale: 'weight' } }),
    );
  }
  return rows;
}

/** The transformer of `p` read from a checkpoint in `format`. */
export function transformerLayout(p: FluxParams, format: TransformerFormat): CheckpointLayout {
  const spec = fluxParamSpec(p);
  return {
    format,
    model: 'transformer',
    spec,
    rules: format === 'bfl-transformer' ? identityRules(spec) : expandRenames(spec, diffusersRenames(p)),
    error: TransformerWeightsError,
    hint: 'Check that the checkpoint is a FLUX.1 transformer of the variant and size its config says (schnell or dev).',
  };
}
