/**
 * The autoencoder's checkpoint layouts. Its keys are BFL's `ae.safetensors` names, the field names of the modules in
 * this folder (`AutoEncoder.spec`); a diffusers `vae/` (AutoencoderKL) is read through the one rename table below
 * (the inverse of diffusers' `convert_ldm_vae_checkpoint`), checked against the full-size key lists of the real
 * classes (test/autoencoder/keys.parity.test.ts) and the tiny fixtures converted by diffusers itself.
 */
import type { AutoEncoderParams } from './config.ts';
import { expandRenames, identityRules, type CheckpointLayout, type ModuleRename } from '../weights/layout.ts';
import { AutoEncoder, VaeWeightsError } from './autoencoder.ts';

export type AutoEncoderFormat = 'bfl-vae' | 'diffusers-vae';

const RESNETS = 'BFL down/up.{i}.block.{j} are diffusers down/up_blocks.{i}.resnets.{j}';
const SHORTCUT = 'LDM nin_shortcut is diffusers conv_shortcut';
const UP = 'BFL indexes decoder levels from full resolution (up.0), diffusers in execution order (up_blocks.0 = up.{L-1})';
const ATTN = 'diffusers Attention: 1x1 convs q, k, v, proj_out are linears to_q, to_k, to_v, to_out.0 ([C, C] vs [C, C, 1, 1])';

/** The BFL module <- diffusers module table, over every level and block of `p`. */
export function diffusersRenames(p: AutoEncoderParams): ModuleRename[] {
  const levels = p.chMult.length;
  const rows: ModuleRename[] = [];
  const r = (model: string, checkpoint: string, why: string, op?: 'conv1x1') => rows.push({ model, checkpoint: [checkpoint], why, ...(op ? { op } : {}) });
  for (const side of ['encoder', 'decoder']) {
    r(`${side}.norm_out`, `${side}.conv_norm_out`, 'diffusers names the final GroupNorm conv_norm_out');
    r(`${side}.mid.block_1`, `${side}.mid_block.resnets.0`, 'named mid resnets in BFL, a list in diffusers');
    r(`${side}.mid.block_2`, `${side}.mid_block.resnets.1`, 'named mid resnets in BFL, a list in diffusers');
    r(`${side}.mid.attn_1.norm`, `${side}.mid_block.attentions.0.group_norm`, 'diffusers Attention names its GroupNorm group_norm');
    for (const [q, to] of [['q', 'to_q'], ['k', 'to_k'], ['v', 'to_v'], ['proj_out', 'to_out.0']]) {
      r(`${side}.mid.attn_1.${q}`, `${side}.mid_block.attentions.0.${to}`, ATTN, 'conv1x1');
    }
  }
  for (let i = 0; i < levels; i++) {
    const u = levels - 1 - i;
    for (let j = 0; j < p.numResBlocks + 1; j++) {
      if (j < p.numResBlocks) {
        r(`encoder.down.${i}.block.${j}`, `encoder.down_blocks.${i}.resnets.${j}`, RESNETS);
        r(`encoder.down.${i}.block.${j}.nin_shortcut`, `encoder.down_blocks.${i}.resnets.${j}.conv_shortcut`, SHORTCUT);
      }
      r(`decoder.up.${i}.block.${j}`, `decoder.up_blocks.${u}.resnets.${j}`, UP);
      r(`decoder.up.${i}.block.${j}.nin_shortcut`, `decoder.up_blocks.${u}.resnets.${j}.conv_shortcut`, `${UP}; ${SHORTCUT}`);
    }
    r(`encoder.down.${i}.downsample.conv`, `encoder.down_blocks.${i}.downsamplers.0.conv`, 'one downsampler per level, listed in diffusers');
    r(`decoder.up.${i}.upsample.conv`, `decoder.up_blocks.${u}.upsamplers.0.conv`, `${UP}; one upsampler per level`);
  }
  return rows;
}

/** The autoencoder of `p` read from a checkpoint in `format`. */
export function autoEncoderLayout(p: AutoEncoderParams, format: AutoEncoderFormat): CheckpointLayout {
  const spec = AutoEncoder.spec(p);
  return {
    format,
    model: 'autoencoder',
    spec,
    rules: format === 'bfl-vae' ? identityRules(spec) : expandRenames(spec, diffusersRenames(p)),
    error: VaeWeightsError,
    hint: 'Check that the file is the FLUX.1 autoencoder (ae.safetensors or vae/diffusion_pytorch_model.safetensors) and that the config matches it.',
  };
}
