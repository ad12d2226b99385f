/**
 * Finding a FLUX.1 model on disk, and deciding once, from the weight files' headers, what each component is:
 * its format, key prefix, the transformer's variant and dims. Loaders and defaults take the result as given; no
 * file or folder name is looked at. Three layouts are understood:
 *
 * 1. A diffusers folder (`model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `text_encoder_2/`,
 *    `tokenizer/`, `tokenizer_2/`, `scheduler/`), e.g. `huggingface-cli download black-forest-labs/FLUX.1-schnell`.
 * 2. A BFL single file (`flux1-schnell.safetensors`, `flux1-dev.safetensors`, fp8 variants, or the same under any
 *    name), or a folder holding one: the autoencoder is the VAE checkpoint beside it (or given), the text encoders,
 *    tokenizers and scheduler come from a diffusers folder (`textEncoders`).
 * 3. The Hugging Face hub cache: `$HF_HUB_CACHE` (default `$HF_HOME/hub`, `~/.cache/huggingface/hub`)
 *    `/models--black-forest-labs--FLUX.1-schnell/snapshots/<rev>/`, which is a diffusers folder. A repo id
 *    (`black-forest-labs/FLUX.1-dev`) names one; with no model given the schnell snapshot is looked for.
 *
 * Only headers and small JSON files are read here (synchronously, milliseconds); weights are read by the stages.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { FluxError, MODEL_DEFAULTS, type FluxVariant, type SchedulerConfig } from '@flux-ts/core';
import { hfCacheDir, snapshotPath } from '../hub/cache.ts';
import { DEFAULT_REPO } from '../hub/download.ts';
import { isDir, isFile, readJson, type JsonErrorFactory } from '../shared/files.ts';
import { fluxParamsFromDiffusers, fluxParamsFromShapes, type FluxParams } from '../transformer/config.ts';
import { listCheckpoints, readCheckpointHeader, type CheckpointHeader } from '../weights/checkpoint.ts';
import { detectFormat, FORMAT_MODEL, locateWeights, stripPrefix, type ModelKind, type WeightsLocation } from '../weights/detect.ts';

/** A model that cannot be found, or a component that is missing or unreadable. */
export class ModelNotFoundError extends FluxError {
  constructor(message: string, code = 'MODEL_NOT_FOUND') {
    super(code, message);
    this.name = 'ModelNotFoundError';
  }
}

/** The transformer's weights, variant and dims. */
export interface TransformerLocation extends WeightsLocation {
  variant: FluxVariant;
  params: FluxParams;
  /** Where the dims came from: a config.json, or the header's shapes. */
  paramsFrom: string;
}

export interface ModelLocation {
  /** How the model was found. */
  layout: 'diffusers' | 'bfl' | 'hf-cache';
  /** A short human name ("black-forest-labs/FLUX.1-schnell", a folder or file name) for logs and metadata. */
  name: string;
  /** From the transformer's header (a guidance embedder means dev). */
  variant: FluxVariant;
  /** diffusers folder holding tokenizer/ and tokenizer_2/ (and the text encoders). */
  textEncoderRoot: string;
  transformer: TransformerLocation;
  vae: WeightsLocation;
  /** CLIP (`text_encoder/`). */
  clip: WeightsLocation;
  /** T5 (`text_encoder_2/`). */
  t5: WeightsLocation;
  scheduler: SchedulerConfig;
}

export interface LocateOptions {
  /** A diffusers folder, a BFL transformer .safetensors file (or a folder holding one), a hub snapshot, or a repo id. */
  model?: string;
  /** For BFL files: the autoencoder checkpoint (default: the VAE checkpoint beside the transformer file). */
  vae?: string;
  /** For BFL files: a diffusers folder (or repo id in the hub cache) with the text encoders and tokenizers. */
  textEncoders?: string;
  /**
   * For BFL files: a diffusers transformer config.json giving what the header's shapes cannot (the RoPE axes when
   * the head dim is not 128). Default: the `config.json` beside the file, when there is one.
   */
  transformerConfig?: string;
  env?: NodeJS.ProcessEnv;
}

const TEXT_PARTS = ['text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2'] as const;
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const DOWNLOAD_AGAIN = 'the download is incomplete, fetch the model again (flux-ts download)';

const missingOrCorrupt: JsonErrorFactory = (code, message) =>
  new ModelNotFoundError(message, code === 'FILE_NOT_FOUND' ? 'MODEL_COMPONENT_MISSING' : 'MODEL_COMPONENT_CORRUPT');

/** Checks that every component folder a pipeline reads exists; names the first missing one. */
function checkComponents(root: string, parts: readonly string[], label: string): void {
  for (const part of parts) {
    const dir = join(root, part);
    if (!isDir(dir)) {
      throw new ModelNotFoundError(`${label}: component ${part}/ is missing (${dir}); download the complete model (flux-ts download)`, 'MODEL_COMPONENT_MISSING');
    }
    const needsConfig = part.startsWith('text_encoder') || part === 'transformer' || part === 'vae';
    if (needsConfig && !isFile(join(dir, 'config.json'))) {
      throw new ModelNotFoundError(`${label}: component ${part}/config.json is missing; download the complete model (flux-ts download)`, 'MODEL_COMPONENT_MISSING');
    }
    if (needsConfig && !readdirSync(dir).some((f) => f.endsWith('.safetensors'))) {
      throw new ModelNotFoundError(`${label}: component ${part}/ has no .safetensors weights (only safetensors are supported); download them (flux-ts download)`, 'MODEL_COMPONENT_MISSING');
    }
  }
}

/** `locateWeights`, with its errors naming the component. */
function component(path: string, model: ModelKind, label: string): { location: WeightsLocation; header: CheckpointHeader } {
  try {
    return locateWeights(path, model);
  } catch (e) {
    if (e instanceof ModelNotFoundError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new ModelNotFoundError(`${label}: ${msg}`, e instanceof FluxError && e.code === 'SAFETENSORS_NOT_FOUND' ? 'MODEL_COMPONENT_MISSING' : 'MODEL_COMPONENT_CORRUPT');
  }
}

const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) ? v : d);

/** `scheduler/scheduler_config.json` -> SchedulerConfig (the variant's defaults for absent fields or file). */
export function readSchedulerConfig(root: string, variant: FluxVariant): SchedulerConfig {
  const d = MODEL_DEFAULTS[variant].scheduler;
  const path = join(root, 'scheduler', 'scheduler_config.json');
  if (!isFile(path)) return d;
  const c = readJson(path, DOWNLOAD_AGAIN, missingOrCorrupt);
  // Options of FlowMatchEulerDiscreteScheduler that the FLUX.1 configs leave off and core's schedule does not implement.
  const unsupported = [
    c.shift_terminal != null && `shift_terminal ${String(c.shift_terminal)}`,
    c.use_karras_sigmas === true && 'use_karras_sigmas',
    c.use_exponential_sigmas === true && 'use_exponential_sigmas',
    c.use_beta_sigmas === true && 'use_beta_sigmas',
    c.invert_sigmas === true && 'invert_sigmas',
    c.stochastic_sampling === true && 'stochastic_sampling',
    c.time_shift_type !== undefined && c.time_shift_type !== 'exponential' && `time_shift_type ${String(c.time_shift_type)}`,
  ].filter(Boolean);
  if (unsupported.length) {
    throw new ModelNotFoundError(`${path}: unsupported scheduler option(s) ${unsupported.join(', ')}; FLUX.1 schnell and dev use none of them`, 'MODEL_UNSUPPORTED_SCHEDULER');
  }
  return Object.freeze({
    num_train_timesteps: num(c.num_train_timesteps, d.num_train_timesteps),
    shift: num(c.shift, d.shift),
    use_dynamic_shifting: typeof c.use_dynamic_shifting === 'boolean' ? c.use_dynamic_shifting : d.use_dynamic_shifting,
    base_shift: num(c.base_shift, d.base_shift),
    max_shift: num(c.max_shift, d.max_shift),
    base_image_seq_len: num(c.base_image_seq_len, d.base_image_seq_len),
    max_image_seq_len: num(c.max_image_seq_len, d.max_image_seq_len),
  });
}

/**
 * The transformer at `path`: format, prefix and variant from its header; dims from its diffusers config.json, or
 * for a BFL file from the header's shapes (a config.json beside it, or `configPath`, gives the RoPE axes).
 */
export function locateTransformer(path: string, label: string, configPath?: string): TransformerLocation {
  const { location, header } = component(path, 'transformer', label);
  const variant = location.variant!;
  let params: FluxParams;
  let paramsFrom: string;
  if (location.format === 'diffusers-transformer') {
    if (!location.config) throw new ModelNotFoundError(`${label}: ${location.path} has no config.json beside it; the diffusers transformer needs its transformer/config.json`, 'MODEL_COMPONENT_MISSING');
    params = fluxParamsFromDiffusers(readJson(location.config, DOWNLOAD_AGAIN, missingOrCorrupt), location.config);
    paramsFrom = location.config;
    if (params.guidanceEmbed !== (variant === 'dev')) {
      throw new ModelNotFoundError(
        `${label}: ${location.config} says guidance_embeds ${params.guidanceEmbed}, but the weights ${variant === 'dev' ? 'have' : 'lack'} a guidance embedder (${variant}); restore the matching config.json`,
        'MODEL_COMPONENT_CORRUPT',
      );
    }
  } else {
    const beside = join(dirname(location.path), 'config.json');
    const cfgPath = configPath ?? (isFile(beside) ? beside : undefined);
    let axesDim: readonly number[] | undefined;
    if (cfgPath) {
      const json = readJson(cfgPath, 'pass the diffusers transformer config.json of this model', missingOrCorrupt);
      if (configPath !== undefined || json._class_name === 'FluxTransformer2DModel' || 'axes_dims_rope' in json) axesDim = fluxParamsFromDiffusers(json, cfgPath).axesDim;
    }
    params = fluxParamsFromShapes(stripPrefix(header.tensors, location.prefix), { axesDim, source: location.path });
    paramsFrom = axesDim ? `the header's shapes (RoPE axes from ${cfgPath})` : "the header's shapes";
  }
  return { ...location, variant, params, paramsFrom };
}

/** A diffusers folder: every component present; formats, variant and dims from the headers and configs. */
export function diffusersLocation(root: string, layout: 'diffusers' | 'hf-cache' = 'diffusers', name = root): ModelLocation {
  const index = readJson(join(root, 'model_index.json'), DOWNLOAD_AGAIN, missingOrCorrupt);
  const cls = index._class_name;
  if (typeof cls === 'string' && !/^Flux/.test(cls)) {
    throw new ModelNotFoundError(`${name} is a ${cls} model, not a FLUX.1 pipeline (model_index.json _class_name); pass a FLUX.1 schnell or dev folder`, 'MODEL_NOT_FLUX');
  }
  checkComponents(root, ['transformer', 'vae', ...TEXT_PARTS], name);
  const transformer = locateTransformer(join(root, 'transformer'), `${name}: transformer/`);
  return {
    layout,
    name,
    variant: transformer.variant,
    textEncoderRoot: root,
    transformer,
    vae: component(join(root, 'vae'), 'vae', `${name}: vae/`).location,
    clip: component(join(root, 'text_encoder'), 'clip', `${name}: text_encoder/`).location,
    t5: component(join(root, 'text_encoder_2'), 't5', `${name}: text_encoder_2/`).location,
    scheduler: readSchedulerConfig(root, transformer.variant),
  };
}

/** The hub cache snapshot of `repo` (revision `main`), or null. */
export function cachedSnapshot(repo: string, env: NodeJS.ProcessEnv = process.env): string | null {
  return snapshotPath(repo, 'main', hfCacheDir(env));
}

function snapshotOrThrow(repo: string, env: NodeJS.ProcessEnv): string {
  const snap = cachedSnapshot(repo, env);
  if (!snap) {
    throw new ModelNotFoundError(
      `model ${repo} is not in the Hugging Face cache (looked in ${hfCacheDir(env)}); download it with: flux-ts download ${repo}`,
    );
  }
  return snap;
}

/** The checkpoints of a folder with the model each holds (from their headers). */
function classify(dir: string): { path: string; model: ModelKind | null }[] {
  return listCheckpoints(dir).map((c) => {
    const path = join(dir, c);
    try {
      const det = detectFormat(readCheckpointHeader(path).tensors.keys());
      return { path, model: det.format === 'unknown' ? null : FORMAT_MODEL[det.format] };
    } catch {
      return { path, model: null }; // unreadable: not a candidate
    }
  });
}

function bflLocation(file: string, opts: LocateOptions, env: NodeJS.ProcessEnv): ModelLocation {
  const transformer = locateTransformer(file, basename(file), opts.transformerConfig);
  let vae: WeightsLocation;
  if (opts.vae) {
    vae = component(opts.vae, 'vae', 'autoencoder').location;
  } else {
    const beside = classify(dirname(transformer.path)).filter((c) => c.model === 'vae');
    if (beside.length !== 1) {
      throw new ModelNotFoundError(
        `autoencoder not found: ${beside.length === 0 ? 'no' : beside.length} VAE checkpoint(s) beside ${transformer.path} (read from the headers); ` +
          'put ae.safetensors next to it or pass --vae FILE; it is in the black-forest-labs/FLUX.1-schnell repository',
        'MODEL_COMPONENT_MISSING',
      );
    }
    vae = component(beside[0]!.path, 'vae', 'autoencoder').location;
  }
  let te = opts.textEncoders ?? env.FLUX_TEXT_ENCODERS;
  if (te && !isDir(te) && REPO_ID.test(te)) te = snapshotOrThrow(te, env);
  if (!te) te = cachedSnapshot(DEFAULT_REPO, env) ?? undefined;
  if (!te) {
    throw new ModelNotFoundError(
      `a BFL transformer file (${basename(file)}) needs the text encoders and tokenizers of a diffusers FLUX.1 folder: ` +
        `pass --text-encoders DIR (or set FLUX_TEXT_ENCODERS); none found in the Hugging Face cache (${hfCacheDir(env)}). ` +
        `Get them with: flux-ts download ${DEFAULT_REPO}`, 'MODEL_COMPONENT_MISSING',
    );
  }
  checkComponents(te, TEXT_PARTS, te);
  return {
    layout: 'bfl',
    name: basename(file),
    variant: transformer.variant,
    textEncoderRoot: te,
    transformer,
    vae,
    clip: component(join(te, 'text_encoder'), 'clip', `${te}: text_encoder/`).location,
    t5: component(join(te, 'text_encoder_2'), 't5', `${te}: text_encoder_2/`).location,
    scheduler: MODEL_DEFAULTS[transformer.variant].scheduler,
  };
}

/** Where `locateModel` looks when no model is given (for the error message). */
export function defaultSearchPlaces(env: NodeJS.ProcessEnv = process.env): string[] {
  const places: string[] = [];
  if (env.FLUX_MODEL) places.push(`$FLUX_MODEL (${env.FLUX_MODEL})`);
  places.push(join(hfCacheDir(env), 'models--black-forest-labs--FLUX.1-schnell', 'snapshots'));
  return places;
}

/**
 * Resolves a model: `opts.model` (folder, BFL file, snapshot or repo id), else `$FLUX_MODEL`, else the hub cache's
 * FLUX.1-schnell. Throws ModelNotFoundError with one line saying where it looked and how to get the weights.
 */
export function locateModel(opts: LocateOptions = {}): ModelLocation {
  const env = opts.env ?? process.env;
  const given = opts.model ?? env.FLUX_MODEL;
  if (!given) {
    const snap = cachedSnapshot(DEFAULT_REPO, env);
    if (snap) return diffusersLocation(snap, 'hf-cache', DEFAULT_REPO);
    throw new ModelNotFoundError(
      `no model given and none found (looked in ${defaultSearchPlaces(env).join(', ')}); ` +
        `download FLUX.1 [schnell] with \`flux-ts download\` or pass --model PATH`,
    );
  }
  if (isDir(given)) {
    if (isFile(join(given, 'model_index.json'))) return diffusersLocation(resolve(given), 'diffusers', given);
    // A repo cache folder (models--org--name, holding snapshots/) or a folder of snapshots: the newest snapshot.
    const snaps = isDir(join(given, 'snapshots')) ? join(given, 'snapshots') : given;
    const revs = readdirSync(snaps).map((r) => join(snaps, r)).filter((p) => isFile(join(p, 'model_index.json')));
    revs.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    if (revs[0]) return diffusersLocation(revs[0], 'hf-cache', given);
    const transformers = classify(given).filter((c) => c.model === 'transformer');
    if (transformers.length === 1) return bflLocation(resolve(transformers[0]!.path), opts, env);
    throw new ModelNotFoundError(
      `${given} is not a FLUX.1 model folder: no model_index.json (diffusers layout) and ${transformers.length === 0 ? 'no' : transformers.length} ` +
        'FLUX transformer checkpoint(s) among its .safetensors files (read from their headers); ' +
        'pass a diffusers FLUX.1 folder, a BFL flux1-schnell.safetensors file, or download one with `flux-ts download`',
    );
  }
  if (isFile(given)) {
    if (!given.endsWith('.safetensors') && !given.endsWith('.safetensors.index.json')) {
      throw new ModelNotFoundError(`${given} is not a .safetensors file; pass a diffusers FLUX.1 folder or a BFL flux1-*.safetensors file`);
    }
    return bflLocation(resolve(given), opts, env);
  }
  if (REPO_ID.test(given) && !given.startsWith('.')) {
    return diffusersLocation(snapshotOrThrow(given, env), 'hf-cache', given);
  }
  throw new ModelNotFoundError(`model ${given} not found (no such file or folder, and not a repo id in the Hugging Face cache ${hfCacheDir(env)}); download one with \`flux-ts download\``);
}
