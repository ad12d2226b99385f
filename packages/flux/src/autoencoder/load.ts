/**
 * Opens the FLUX autoencoder from disk: BFL's single `ae.safetensors` (dims: FLUX_VAE, the BFL ae_params), a diffusers
 * `vae/` folder (`config.json` + `diffusion_pytorch_model.safetensors`, dims from the config), a diffusers model root
 * holding `vae/`, or a single-file checkpoint whose VAE keys carry a `first_stage_model.` (LDM/ComfyUI) or `vae.`
 * prefix. Names go through the one rename table (weights/vae-keys.ts) and the strict walk (AutoEncoder.loadWeights).
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AutoEncoder, VaeWeightsError, type WeightValue } from './autoencoder.ts';
import { autoEncoderParamsFromDiffusers, ConfigError, FLUX_VAE, type AutoEncoderParams } from '../transformer/config.ts';
import { openCheckpoint, type Checkpoint } from '../weights/checkpoint.ts';

/** Key prefixes of VAE weights inside larger single-file checkpoints, tried in this order. */
export const VAE_KEY_PREFIXES = Object.freeze(['first_stage_model.', 'vae.']);

export interface LoadAutoEncoderOptions {
  /** Dims to use instead of the folder's config.json (diffusers) or FLUX_VAE (BFL file). */
  params?: AutoEncoderParams;
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

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** The VAE keys of a checkpoint: those under the first prefix any key uses (stripped), otherwise all keys. */
export function selectVaeKeys(names: Iterable<string>): { prefix: string; keys: Map<string, string> } {
  const all = [...names];
  for (const prefix of VAE_KEY_PREFIXES) {
    const under = all.filter((n) => n.startsWith(prefix));
    if (under.length > 0) return { prefix, keys: new Map(under.map((n) => [n.slice(prefix.length), n])) };
  }
  return { prefix: '', keys: new Map(all.map((n) => [n, n])) };
}

/** Resolves `path` to the weights to open and the config.json that goes with them (null for a BFL file). */
async function locate(path: string): Promise<{ weights: string; config: string | null }> {
  if (await isDir(path)) {
    if (await isDir(join(path, 'vae'))) return locate(join(path, 'vae'));
    const cfg = join(path, 'config.json');
    const hasCfg = await isFile(cfg);
    const diffusersFile = join(path, 'diffusion_pytorch_model.safetensors');
    if (await isFile(diffusersFile)) return { weights: diffusersFile, config: hasCfg ? cfg : null };
    const bfl = join(path, 'ae.safetensors');
    if (await isFile(bfl)) return { weights: bfl, config: null };
    return { weights: path, config: hasCfg ? cfg : null }; // openCheckpoint reports what it finds there
  }
  if (basename(path) === 'diffusion_pytorch_model.safetensors' || basename(path).endsWith('.safetensors.index.json')) {
    const cfg = join(path, '..', 'config.json');
    return { weights: path, config: (await isFile(cfg)) ? cfg : null };
  }
  return { weights: path, config: null };
}

/**
 * Loads the autoencoder at `path` (see the module comment for what it accepts). Throws SafetensorsError for an
 * unreadable file, ConfigError for a bad config.json, VaeWeightsError when the keys do not match the dims.
 */
export async function loadAutoEncoder(path: string, opts: LoadAutoEncoderOptions = {}): Promise<LoadedAutoEncoder> {
  const where = await locate(path);
  let params: AutoEncoderParams;
  let paramsSource: string;
  if (opts.params) {
    params = opts.params;
    paramsSource = 'options';
  } else if (where.config) {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(where.config, 'utf8'));
    } catch (e) {
      throw new ConfigError(where.config, `cannot read it as JSON (${(e as Error).message}); restore the vae/config.json of the model`);
    }
    params = autoEncoderParamsFromDiffusers(json, where.config);
    paramsSource = where.config;
  } else {
    params = FLUX_VAE;
    paramsSource = 'FLUX_VAE';
  }
  const ckpt: Checkpoint = await openCheckpoint(where.weights);
  try {
    const { prefix, keys } = selectVaeKeys(ckpt.tensors.keys());
    if (keys.size === 0) throw new VaeWeightsError(`${ckpt.path} holds no tensors; pass the FLUX.1 ae.safetensors or the vae/ folder`);
    const weights = new Map<string, WeightValue>();
    for (const [name, stored] of keys) {
      const info = ckpt.tensors.get(stored)!;
      weights.set(name, { data: await ckpt.readFloat32(stored), shape: info.shape });
    }
    const ae = AutoEncoder.fromWeights(params, weights, prefix ? `${ckpt.path} (keys under "${prefix}")` : ckpt.path);
    return { ae, weightsPath: ckpt.path, paramsSource, prefix };
  } finally {
    await ckpt.close();
  }
}
