/**
 * The ONE table between the two FLUX transformer checkpoint layouts: BFL (`flux1-schnell.safetensors`, the names our
 * modules use) and diffusers (`transformer/`, FluxTransformer2DModel). Mirrors diffusers'
 * `convert_flux_transformer_checkpoint_to_diffusers` (loaders/single_file_utils.py) in the other direction.
 * Every rule builds one BFL tensor from one or more diffusers tensors:
 *   rename       same tensor, new name
 *   concat       rows concatenated in order (dim 0 of [out, in] weights and [out] biases)
 *   swap_halves  the two row halves exchanged (diffusers' AdaLayerNormContinuous splits scale, shift; BFL shift, scale)
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';

export type KeyOp = 'rename' | 'concat' | 'swap_halves';

export interface KeyRule {
  readonly bfl: string;
  readonly diffusers: readonly string[];
  readonly op: KeyOp;
  readonly why: string;
}

export interface TransformerLayout {
  depth: number;
  depthSingleBlocks: number;
  guidanceEmbed: boolean;
  qkvBias: boolean;
}

/** One rule per parameter tensor of a Linear (`.weight`, and `.bias` when `bias`). */
function lin(bfl: string, diffusers: string[], op: KeyOp, why: string, bias = true): KeyRule[] {
  const out: KeyRule[] = [{ bfl: `${bfl}.weight`, diffusers: diffusers.map((d) => `${d}.weight`), op, why }];
  if (bias) out.push({ bfl: `${bfl}.bias`, diffusers: diffusers.map((d) => `${d}.bias`), op, why });
  return out;
}

const RENAME = 'renamed module';
const QKV = 'diffusers keeps q, k, v as separate Linears; BFL fuses them as one [(K H D), in] Linear';

/** Embedders and the final layer (everything outside the blocks). */
export function stemKeyRules(l: Pick<TransformerLayout, 'guidanceEmbed'>): KeyRule[] {
  return [
    ...lin('img_in', ['x_embedder'], 'rename', RENAME),
    ...lin('txt_in', ['context_embedder'], 'rename', RENAME),
    ...lin('time_in.in_layer', ['time_text_embed.timestep_embedder.linear_1'], 'rename', RENAME),
    ...lin('time_in.out_layer', ['time_text_embed.timestep_embedder.linear_2'], 'rename', RENAME),
    ...lin('vector_in.in_layer', ['time_text_embed.text_embedder.linear_1'], 'rename', RENAME),
    ...lin('vector_in.out_layer', ['time_text_embed.text_embedder.linear_2'], 'rename', RENAME),
    ...(l.guidanceEmbed
      ? [
          ...lin('guidance_in.in_layer', ['time_text_embed.guidance_embedder.linear_1'], 'rename', RENAME),
          ...lin('guidance_in.out_layer', ['time_text_embed.guidance_embedder.linear_2'], 'rename', RENAME),
        ]
      : []),
    ...lin('final_layer.linear', ['proj_out'], 'rename', RENAME),
    ...lin('final_layer.adaLN_modulation.1', ['norm_out.linear'], 'swap_halves',
      'diffusers AdaLayerNormContinuous chunks (scale, shift); BFL LastLayer chunks (shift, scale)'),
  ];
}

/** `double_blocks.{i}.*` from `transformer_blocks.{i}.*`. */
export function doubleBlockKeyRules(i: number, qkvBias = true): KeyRule[] {
  const b = `double_blocks.${i}.`;
  const d = `transformer_blocks.${i}.`;
  const norm = (bfl: string, dif: string): KeyRule => ({ bfl: b + bfl, diffusers: [d + dif], op: 'rename', why: 'QKNorm scale = RMSNorm weight' });
  return [
    ...lin(`${b}img_mod.lin`, [`${d}norm1.linear`], 'rename', RENAME),
    ...lin(`${b}txt_mod.lin`, [`${d}norm1_context.linear`], 'rename', RENAME),
    ...lin(`${b}img_attn.qkv`, ['to_q', 'to_k', 'to_v'].map((n) => `${d}attn.${n}`), 'concat', QKV, qkvBias),
    ...lin(`${b}txt_attn.qkv`, ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((n) => `${d}attn.${n}`), 'concat', QKV, qkvBias),
    norm('img_attn.norm.query_norm.scale', 'attn.norm_q.weight'),
    norm('img_attn.norm.key_norm.scale', 'attn.norm_k.weight'),
    norm('txt_attn.norm.query_norm.scale', 'attn.norm_added_q.weight'),
    norm('txt_attn.norm.key_norm.scale', 'attn.norm_added_k.weight'),
    ...lin(`${b}img_attn.proj`, [`${d}attn.to_out.0`], 'rename', RENAME),
    ...lin(`${b}txt_attn.proj`, [`${d}attn.to_add_out`], 'rename', RENAME),
    ...lin(`${b}img_mlp.0`, [`${d}ff.net.0.proj`], 'rename', RENAME),
    ...lin(`${b}img_mlp.2`, [`${d}ff.net.2`], 'rename', RENAME),
    ...lin(`${b}txt_mlp.0`, [`${d}ff_context.net.0.proj`], 'rename', RENAME),
    ...lin(`${b}txt_mlp.2`, [`${d}ff_context.net.2`], 'rename', RENAME),
  ];
}

/** `single_blocks.{i}.*` from `single_transformer_blocks.{i}.*`. */
export function singleBlockKeyRules(i: number): KeyRule[] {
  const b = `single_blocks.${i}.`;
  const d = `single_transformer_blocks.${i}.`;
  return [
    ...lin(`${b}modulation.lin`, [`${d}norm.linear`], 'rename', RENAME),
    ...lin(`${b}linear1`, ['attn.to_q', 'attn.to_k', 'attn.to_v', 'proj_mlp'].map((n) => d + n), 'concat',
      'BFL fuses q, k, v and the MLP input into linear1 (rows: q | k | v | mlp)'),
    ...lin(`${b}linear2`, [`${d}proj_out`], 'rename', 'BFL linear2 = diffusers proj_out over cat(attn, mlp)'),
    { bfl: `${b}norm.query_norm.scale`, diffusers: [`${d}attn.norm_q.weight`], op: 'rename', why: 'QKNorm scale = RMSNorm weight' },
    { bfl: `${b}norm.key_norm.scale`, diffusers: [`${d}attn.norm_k.weight`], op: 'rename', why: 'QKNorm scale = RMSNorm weight' },
  ];
}

export function transformerKeyRules(l: TransformerLayout): KeyRule[] {
  const rules = stemKeyRules(l);
  for (let i = 0; i < l.depth; i++) rules.push(...doubleBlockKeyRules(i, l.qkvBias));
  for (let i = 0; i < l.depthSingleBlocks; i++) rules.push(...singleBlockKeyRules(i));
  return rules;
}

/** The rules building the BFL tensors under `bflPrefix` (one module, e.g. `double_blocks.3.`): what a streaming loader reads. */
export function keyRulesUnder(bflPrefix: string, l: TransformerLayout): KeyRule[] {
  const m = /^(double|single)_blocks\.(\d+)\.$/.exec(bflPrefix);
  if (m) {
    const i = Number(m[2]);
    const n = m[1] === 'double' ? l.depth : l.depthSingleBlocks;
    if (i >= n) return [];
    return m[1] === 'double' ? doubleBlockKeyRules(i, l.qkvBias) : singleBlockKeyRules(i);
  }
  return stemKeyRules(l).filter((r) => r.bfl.startsWith(bflPrefix));
}

/** BFL single-file checkpoints (ComfyUI exports) may carry this prefix; it is stripped. */
export const BFL_KEY_PREFIX = 'model.diffusion_model.';

export type TransformerFormat = 'bfl' | 'diffusers';

/** Which layout a set of keys uses (null when neither is recognisable). */
export function detectTransformerFormat(keys: Iterable<string>): TransformerFormat | null {
  for (const k of keys) {
    if (k.startsWith('transformer_blocks.') || k.startsWith('single_transformer_blocks.') || k.startsWith('x_embedder.')) return 'diffusers';
    const s = k.startsWith(BFL_KEY_PREFIX) ? k.slice(BFL_KEY_PREFIX.length) : k;
    if (s.startsWith('double_blocks.') || s.startsWith('single_blocks.') || s.startsWith('img_in.')) return 'bfl';
  }
  return null;
}

export class TransformerKeyError extends FluxError {
  constructor(message: string) {
    super('TRANSFORMER_KEYS', message);
    this.name = 'TransformerKeyError';
  }
}

function list(keys: string[], limit = 8): string {
  return keys.length > limit ? `${keys.slice(0, limit).join(', ')} and ${keys.length - limit} more` : keys.join(', ');
}

/**
 * diffusers-named tensors -> BFL-named tensors, by `rules`. Takes ownership of the input tensors: renamed ones are
 * moved, concatenated / swapped sources are disposed once the new tensor exists. Throws a TransformerKeyError
 * naming missing and unexpected diffusers keys (nothing is disposed then).
 */
export function diffusersToBfl(tensors: Record<string, tf.Tensor>, rules: readonly KeyRule[]): Record<string, tf.Tensor> {
  const missing = rules.flatMap((r) => r.diffusers.filter((k) => !(k in tensors)));
  const used = new Set(rules.flatMap((r) => r.diffusers));
  const unexpected = Object.keys(tensors).filter((k) => !used.has(k));
  if (missing.length || unexpected.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing ${missing.length} key(s): ${list(missing)}`);
    if (unexpected.length) parts.push(`unexpected ${unexpected.length} key(s): ${list(unexpected)}`);
    throw new TransformerKeyError(
      `the diffusers transformer weights do not match the config: ${parts.join('; ')}. ` +
        'Check that the folder is a FLUX.1 transformer of the variant you asked for (schnell or dev).',
    );
  }
  const out: Record<string, tf.Tensor> = {};
  for (const r of rules) {
    const src = r.diffusers.map((k) => tensors[k]!);
    if (r.op === 'rename') {
      out[r.bfl] = src[0]!;
      continue;
    }
    if (r.op === 'concat') {
      const cols = src[0]!.shape.slice(1).join(',');
      if (src.some((t) => t.shape.slice(1).join(',') !== cols)) {
        throw new TransformerKeyError(`cannot build ${r.bfl}: ${r.diffusers.join(', ')} differ in shape beyond dim 0 (${src.map((t) => `[${t.shape.join(', ')}]`).join(', ')})`);
      }
      out[r.bfl] = tf.concat(src, 0);
    } else {
      const t = src[0]!;
      const half = t.shape[0]! / 2;
      if (!Number.isInteger(half)) throw new TransformerKeyError(`cannot swap the halves of ${r.diffusers[0]}: dim 0 is ${t.shape[0]}, not even`);
      out[r.bfl] = tf.tidy(() => {
        const [a, b] = tf.split(t, 2, 0);
        return tf.concat([b!, a!], 0);
      });
    }
    for (const t of src) t.dispose();
  }
  return out;
}

/** Strips the `model.diffusion_model.` prefix from BFL keys (moves the tensors). */
export function stripBflPrefix(tensors: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, t] of Object.entries(tensors)) out[k.startsWith(BFL_KEY_PREFIX) ? k.slice(BFL_KEY_PREFIX.length) : k] = t;
  return out;
}

/** Either layout -> BFL names (the names our modules use). Takes ownership of the input tensors. */
export function toBflTransformerKeys(tensors: Record<string, tf.Tensor>, layout: TransformerLayout): Record<string, tf.Tensor> {
  const format = detectTransformerFormat(Object.keys(tensors));
  if (format === 'diffusers') return diffusersToBfl(tensors, transformerKeyRules(layout));
  return stripBflPrefix(tensors);
}
