/** The autoencoder's typed config: BFL's `AutoEncoderParams` plus what diffusers' AutoencoderKL adds, and its config.json. */
import { configError, configObject, freeze, positiveInt, reader } from '../shared/config-json.ts';

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
