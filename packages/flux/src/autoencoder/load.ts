/**
 * Opens the FLUX autoencoder: BFL's `ae.safetensors` (dims: FLUX_VAE, BFL's ae_params), a diffusers `vae/` folder or
 * its file (dims from the `config.json` beside it), a diffusers model root holding `vae/`, or a single-file
 * checkpoint whose VAE keys carry a `first_stage_model.` (LDM/ComfyUI) or `vae.` prefix. Format and prefix come from
 * the header; names go through the layout (autoencoder/keys.ts) into the model's fields. Always resident.
 */
import { join } from 'node:path';
import { isDir, readJson } from '../shared/files.ts';
import { autoEncoderParamsFromDiffusers, FLUX_VAE, type AutoEncoderParams } from './config.ts';
import { memoryCheckpoint, openCheckpoint, type WeightValue } from '../weights/checkpoint.ts';
import { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { detectFormat, locateWeights, type WeightsLocation } from '../weights/detect.ts';
import { AutoEncoder } from './autoencoder.ts';
import { autoEncoderLayout, type AutoEncoderFormat } from './keys.ts';
import type { Precision } from '../runtime/bf16.ts';

export interface LoadAutoEncoderOptions {
  /** Dims to use instead of the config.json beside the weights (diffusers) or FLUX_VAE (BFL file). */
  params?: AutoEncoderParams;
  /** Convolution weights in bf16 (native backend) or float32 (default). */
  precision?: Precision;
  /** Called after each tensor is built (`done` of `total`). */
  onProgress?: (done: number, total: number) => void;
}

export interface LoadedAutoEncoder {
  ae: AutoEncoder;
  /** The weights file or index read. */
  weightsPath: string;
  /** Where the dims came from: the config.json path, 'FLUX_VAE' or 'options'. */
  paramsSource: string;
  /** The key prefix stripped ('' for none). */
  prefix: string;
}

/** The dims of the autoencoder at `location`: given, from its diffusers config.json, or BFL's. */
function paramsFor(location: WeightsLocation, given?: AutoEncoderParams): { params: AutoEncoderParams; source: string } {
  if (given) return { params: given, source: 'options' };
  if (location.config) {
    const json = readJson(location.config, 'restore the vae/config.json of the model');
    return { params: autoEncoderParamsFromDiffusers(json, location.config), source: location.config };
  }
  return { params: FLUX_VAE, source: 'FLUX_VAE' };
}

/**
 * Loads the autoencoder at `at` (see the module comment) or at a location model discovery found. Throws
 * SafetensorsError for an unreadable file, ConfigError for a bad config.json, VaeWeightsError when the keys do not
 * match the dims.
 */
export async function loadAutoEncoder(at: string | WeightsLocation, opts: LoadAutoEncoderOptions = {}): Promise<LoadedAutoEncoder> {
  const location = typeof at === 'string' ? locateWeights(isDir(join(at, 'vae')) ? join(at, 'vae') : at, 'vae').location : at;
  const { params, source } = paramsFor(location, opts.params);
  const ckpt = await openCheckpoint(location.path);
  try {
    const weights = new CheckpointWeights(ckpt, autoEncoderLayout(params, location.format as AutoEncoderFormat), {
      residency: 'resident',
      prefix: location.prefix,
      precision: opts.precision,
    });
    try {
      await weights.loadAll(opts.onProgress);
      return { ae: AutoEncoder.fromCheckpointWeights(params, weights), weightsPath: ckpt.path, paramsSource: source, prefix: location.prefix };
    } catch (e) {
      weights.dispose();
      throw e;
    }
  } finally {
    await ckpt.close();
  }
}

/**
 * The autoencoder from weights in memory (BFL or diffusers names, told apart by the keys), checked and built at
 * once. The values are read, not kept: the caller still owns them.
 */
export function autoEncoderFromWeights(
  params: AutoEncoderParams,
  values: ReadonlyMap<string, WeightValue>,
  where = 'VAE weights',
  opts: { precision?: Precision } = {},
): AutoEncoder {
  const reader = memoryCheckpoint(values, where);
  const detected = detectFormat(reader.tensors.keys());
  const format: AutoEncoderFormat = detected.format === 'diffusers-vae' ? 'diffusers-vae' : 'bfl-vae';
  const weights = new CheckpointWeights(reader, autoEncoderLayout(params, format), {
    residency: 'resident',
    prefix: detected.format === format ? detected.prefix : '',
    precision: opts.precision,
  });
  try {
    weights.loadAllSync();
    return AutoEncoder.fromCheckpointWeights(params, weights);
  } catch (e) {
    weights.dispose();
    throw e;
  }
}
