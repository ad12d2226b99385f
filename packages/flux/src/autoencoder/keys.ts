/**
 * The one table between the FLUX autoencoder's key names in BFL's `ae.safetensors` (which are the field names of
 * packages/flux/src/autoencoder/*) and diffusers' `vae/diffusion_pytorch_model.safetensors` (AutoencoderKL).
 * Checked against diffusers' own `convert_ldm_vae_checkpoint` by test/reference/gen_vae.py, and against the full-size
 * key lists in test/fixtures/keys/{bfl,diffusers}-vae.json by packages/flux/test/vae-keys.test.ts.
 *
 * Placeholders: {side} encoder|decoder, {i} level, {u} diffusers up-block index (= levels - 1 - level),
 * {j} block index, {r} resnet layer, {p} weight|bias.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WeightValue } from '../nn/conv2d.ts';

interface VaeKeyRule {
  readonly bfl: string;
  readonly diffusers: string;
  /** One-line reason for the rename. */
  readonly why: string;
  /** The weight is a 1x1 conv [C, C, 1, 1] in BFL and a linear [C, C] in diffusers. */
  readonly linearVsConv1x1?: boolean;
}

export const VAE_KEY_RULES: readonly VaeKeyRule[] = Object.freeze([
  { bfl: '{side}.conv_in.{p}', diffusers: '{side}.conv_in.{p}', why: 'same name' },
  { bfl: '{side}.conv_out.{p}', diffusers: '{side}.conv_out.{p}', why: 'same name' },
  { bfl: '{side}.norm_out.{p}', diffusers: '{side}.conv_norm_out.{p}', why: 'diffusers names the final GroupNorm conv_norm_out' },
  { bfl: 'encoder.down.{i}.block.{j}.{r}.{p}', diffusers: 'encoder.down_blocks.{i}.resnets.{j}.{r}.{p}', why: 'down/block vs down_blocks/resnets' },
  { bfl: 'encoder.down.{i}.block.{j}.nin_shortcut.{p}', diffusers: 'encoder.down_blocks.{i}.resnets.{j}.conv_shortcut.{p}', why: 'LDM nin_shortcut is diffusers conv_shortcut' },
  { bfl: 'encoder.down.{i}.downsample.conv.{p}', diffusers: 'encoder.down_blocks.{i}.downsamplers.0.conv.{p}', why: 'one downsampler per level, listed in diffusers' },
  { bfl: 'decoder.up.{i}.block.{j}.{r}.{p}', diffusers: 'decoder.up_blocks.{u}.resnets.{j}.{r}.{p}', why: 'BFL indexes up by level (0 = full resolution), diffusers in execution order' },
  { bfl: 'decoder.up.{i}.block.{j}.nin_shortcut.{p}', diffusers: 'decoder.up_blocks.{u}.resnets.{j}.conv_shortcut.{p}', why: 'reversed order and nin_shortcut vs conv_shortcut' },
  { bfl: 'decoder.up.{i}.upsample.conv.{p}', diffusers: 'decoder.up_blocks.{u}.upsamplers.0.conv.{p}', why: 'reversed order, one upsampler per level' },
  { bfl: '{side}.mid.block_1.{r}.{p}', diffusers: '{side}.mid_block.resnets.0.{r}.{p}', why: 'named mid resnets vs a list' },
  { bfl: '{side}.mid.block_2.{r}.{p}', diffusers: '{side}.mid_block.resnets.1.{r}.{p}', why: 'named mid resnets vs a list' },
  { bfl: '{side}.mid.attn_1.norm.{p}', diffusers: '{side}.mid_block.attentions.0.group_norm.{p}', why: 'diffusers Attention names its GroupNorm group_norm' },
  { bfl: '{side}.mid.attn_1.q.{p}', diffusers: '{side}.mid_block.attentions.0.to_q.{p}', why: '1x1 conv vs linear', linearVsConv1x1: true },
  { bfl: '{side}.mid.attn_1.k.{p}', diffusers: '{side}.mid_block.attentions.0.to_k.{p}', why: '1x1 conv vs linear', linearVsConv1x1: true },
  { bfl: '{side}.mid.attn_1.v.{p}', diffusers: '{side}.mid_block.attentions.0.to_v.{p}', why: '1x1 conv vs linear', linearVsConv1x1: true },
  { bfl: '{side}.mid.attn_1.proj_out.{p}', diffusers: '{side}.mid_block.attentions.0.to_out.0.{p}', why: '1x1 conv vs linear (to_out.1 is dropout)', linearVsConv1x1: true },
]);

const SLOTS: Record<string, string> = {
  side: '(encoder|decoder)',
  i: '(\\d+)',
  u: '(\\d+)',
  j: '(\\d+)',
  r: '(norm1|conv1|norm2|conv2)',
  p: '(weight|bias)',
};

interface Compiled {
  readonly re: RegExp;
  readonly slots: string[];
}

function compile(template: string): Compiled {
  const slots: string[] = [];
  const src = template
    .split(/(\{[a-z]+\})/)
    .map((part) => {
      const m = /^\{([a-z]+)\}$/.exec(part);
      if (!m) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      slots.push(m[1]);
      return SLOTS[m[1]];
    })
    .join('');
  return { re: new RegExp(`^${src}$`), slots };
}

const COMPILED = VAE_KEY_RULES.map((r) => ({ rule: r, bfl: compile(r.bfl), diffusers: compile(r.diffusers) }));

function rename(name: string, from: 'bfl' | 'diffusers', levels: number): { name: string; rule: VaeKeyRule } | null {
  const to = from === 'bfl' ? 'diffusers' : 'bfl';
  for (const c of COMPILED) {
    const m = c[from].re.exec(name);
    if (!m) continue;
    const v: Record<string, string> = {};
    c[from].slots.forEach((s, k) => (v[s] = m[k + 1]));
    if (v.u !== undefined) v.i = String(levels - 1 - Number(v.u));
    if (v.i !== undefined) v.u = String(levels - 1 - Number(v.i));
    if (Number(v.i) < 0 || Number(v.i) >= levels) return null;
    return { name: c.rule[to].replace(/\{([a-z]+)\}/g, (_, s: string) => v[s]), rule: c.rule };
  }
  return null;
}

/** diffusers `vae/` key -> BFL `ae.safetensors` key; null when no rule matches. `levels` = len(ch_mult). */
export function diffusersToBflVaeKey(name: string, levels: number): string | null {
  return rename(name, 'diffusers', levels)?.name ?? null;
}

/** BFL key -> diffusers key; null when no rule matches. */
export function bflToDiffusersVaeKey(name: string, levels: number): string | null {
  return rename(name, 'bfl', levels)?.name ?? null;
}

/** True when the names look like diffusers' AutoencoderKL (`down_blocks`, `up_blocks`, `mid_block`). */
export function isDiffusersVaeNaming(names: Iterable<string>): boolean {
  for (const n of names) if (/\.(down_blocks|up_blocks|mid_block)\./.test(n)) return true;
  return false;
}

/** The BFL checkpoint shape of a diffusers tensor (attention linear [C, C] -> 1x1 conv [C, C, 1, 1]). */
export function diffusersToBflVaeShape(diffusersName: string, shape: readonly number[], levels: number): readonly number[] {
  const r = rename(diffusersName, 'diffusers', levels);
  return r?.rule.linearVsConv1x1 && diffusersName.endsWith('.weight') && shape.length === 2 ? [...shape, 1, 1] : shape;
}

/**
 * Renames a diffusers-named VAE weight map to BFL names (the model's field names). Names no rule knows pass
 * through unchanged, so the strict loader reports them as unexpected. Attention weights get their 1x1 conv shape;
 * a tensor value among those is read back to float32 data (four small tensors), so no tensor is created here.
 */
export function diffusersToBflVaeWeights(weights: ReadonlyMap<string, WeightValue>, levels: number): Map<string, WeightValue> {
  const out = new Map<string, WeightValue>();
  for (const [name, value] of weights) {
    let bfl = diffusersToBflVaeKey(name, levels) ?? name;
    if (out.has(bfl)) bfl = name; // two names for one weight: keep the original so the loader reports it
    const shape = value instanceof tf.Tensor ? value.shape : value.shape;
    const want = diffusersToBflVaeShape(name, shape, levels);
    if (want === shape) out.set(bfl, value);
    else out.set(bfl, { data: value instanceof tf.Tensor ? (value.dataSync() as Float32Array) : value.data, shape: want });
  }
  return out;
}
