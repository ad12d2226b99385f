/**
 * Finding a FLUX.1 model on disk. Three layouts are understood:
 *
 * 1. A diffusers folder (`model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `text_encoder_2/`,
 *    `tokenizer/`, `tokenizer_2/`, `scheduler/`), e.g. `huggingface-cli download black-forest-labs/FLUX.1-schnell`.
 * 2. BFL single files: `flux1-schnell.safetensors` (or an fp8 variant) + `ae.safetensors` next to it (or given),
 *    with the text encoders, tokenizers and scheduler taken from a diffusers folder (`textEncoders`).
 * 3. The Hugging Face hub cache: `$HF_HUB_CACHE` (default `$HF_HOME/hub`, `~/.cache/huggingface/hub`)
 *    `/models--black-forest-labs--FLUX.1-schnell/snapshots/<rev>/`, which is a diffusers folder. A repo id
 *    (`black-forest-labs/FLUX.1-dev`) names one; with no model given the schnell snapshot is looked for.
 *
 * Only paths and small JSON files are read here; weights are opened by the pipeline stages.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { FluxError, MODEL_DEFAULTS, type FluxVariant, type SchedulerConfig } from '@flux-ts/core';
import { hfCacheDir, snapshotPath } from '../hub/cache.ts';
import { DEFAULT_REPO } from '../hub/download.ts';

/** A model that cannot be found, or a component that is missing or unreadable. */
export class ModelNotFoundError extends FluxError {
  constructor(message: string, code = 'MODEL_NOT_FOUND') {
    super(code, message);
    this.name = 'ModelNotFoundError';
  }
}

export interface ModelLocation {
  /** How the model was found. */
  layout: 'diffusers' | 'bfl' | 'hf-cache';
  /** A short human name ("black-forest-labs/FLUX.1-schnell", a folder or file name) for logs and metadata. */
  name: string;
  variant: FluxVariant;
  /** diffusers folder holding text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/ (and scheduler/). */
  textEncoderRoot: string;
  /** diffusers `transformer/` folder, or a BFL .safetensors file. */
  transformer: string;
  /** diffusers `transformer/config.json` (absent for BFL files: the variant's built-in config is used). */
  transformerConfig?: string;
  /** diffusers `vae/` folder, or a BFL `ae.safetensors` file. */
  vae: string;
  /** diffusers `vae/config.json` (absent for ae.safetensors). */
  vaeConfig?: string;
  scheduler: SchedulerConfig;
}

export interface LocateOptions {
  /** A diffusers folder, a BFL transformer .safetensors file, a hub snapshot, or a repo id ("org/name"). */
  model?: string;
  /** For BFL files: the autoencoder file (default: ae.safetensors next to the transformer file). */
  vae?: string;
  /** For BFL files: a diffusers folder (or repo id in the hub cache) with the text encoders and tokenizers. */
  textEncoders?: string;
  env?: NodeJS.ProcessEnv;
}

const TEXT_PARTS = ['text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2'] as const;
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function readJson(path: string, what: string): Record<string, unknown> {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelNotFoundError(`${what} is missing: ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)}); the download is incomplete, fetch the model again (pnpm flux download)`, 'MODEL_COMPONENT_MISSING');
  }
  try {
    const v = JSON.parse(raw) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new ModelNotFoundError(`${what} is not valid JSON: ${path}; fetch the model again (pnpm flux download)`, 'MODEL_COMPONENT_CORRUPT');
  }
}

/** Checks that every component folder a pipeline reads exists; names the first missing one. */
function checkComponents(root: string, parts: readonly string[], label: string): void {
  for (const part of parts) {
    const dir = join(root, part);
    if (!isDir(dir)) {
      throw new ModelNotFoundError(`${label}: component ${part}/ is missing (${dir}); download the complete model (pnpm flux download)`, 'MODEL_COMPONENT_MISSING');
    }
    const needsConfig = part.startsWith('text_encoder') || part === 'transformer' || part === 'vae';
    if (needsConfig && !isFile(join(dir, 'config.json'))) {
      throw new ModelNotFoundError(`${label}: component ${part}/config.json is missing; download the complete model (pnpm flux download)`, 'MODEL_COMPONENT_MISSING');
    }
    if (needsConfig && !readdirSync(dir).some((f) => f.endsWith('.safetensors'))) {
      throw new ModelNotFoundError(`${label}: component ${part}/ has no .safetensors weights (only safetensors are supported); download them (pnpm flux download)`, 'MODEL_COMPONENT_MISSING');
    }
  }
}

const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) ? v : d);

/** `scheduler/scheduler_config.json` -> SchedulerConfig (the variant's defaults for absent fields or file). */
export function readSchedulerConfig(root: string, variant: FluxVariant): SchedulerConfig {
  const d = MODEL_DEFAULTS[variant].scheduler;
  const path = join(root, 'scheduler', 'scheduler_config.json');
  if (!isFile(path)) return d;
  const c = readJson(path, 'scheduler/scheduler_config.json');
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

/** A diffusers folder: every component present, the variant from transformer/config.json (guidance_embeds). */
export function diffusersLocation(root: string, layout: 'diffusers' | 'hf-cache' = 'diffusers', name = root): ModelLocation {
  const index = readJson(join(root, 'model_index.json'), `${name}: model_index.json`);
  const cls = index._class_name;
  if (typeof cls === 'string' && !/^Flux/.test(cls)) {
    throw new ModelNotFoundError(`${name} is a ${cls} model, not a FLUX.1 pipeline (model_index.json _class_name); pass a FLUX.1 schnell or dev folder`, 'MODEL_NOT_FLUX');
  }
  checkComponents(root, ['transformer', 'vae', ...TEXT_PARTS], name);
  const tcfg = readJson(join(root, 'transformer', 'config.json'), `${name}: transformer/config.json`);
  const variant: FluxVariant = tcfg.guidance_embeds === true ? 'dev' : 'schnell';
  return {
    layout,
    name,
    variant,
    textEncoderRoot: root,
    transformer: join(root, 'transformer'),
    transformerConfig: join(root, 'transformer', 'config.json'),
    vae: join(root, 'vae'),
    vaeConfig: join(root, 'vae', 'config.json'),
    scheduler: readSchedulerConfig(root, variant),
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
      `model ${repo} is not in the Hugging Face cache (looked in ${hfCacheDir(env)}); download it with: pnpm flux download ${repo}`,
    );
  }
  return snap;
}

/** A first guess from the file name; the pipeline confirms it from the checkpoint keys (guidance_in.*). */
function bflVariant(file: string): FluxVariant {
  return /dev/i.test(basename(file)) ? 'dev' : 'schnell';
}

function bflLocation(file: string, opts: LocateOptions, env: NodeJS.ProcessEnv): ModelLocation {
  const vae = opts.vae ?? join(dirname(file), 'ae.safetensors');
  if (!isFile(vae)) {
    throw new ModelNotFoundError(
      `autoencoder not found: ${vae}. A BFL transformer file needs ae.safetensors next to it (or --vae FILE); ` +
        'it is in the black-forest-labs/FLUX.1-schnell repository', 'MODEL_COMPONENT_MISSING',
    );
  }
  let te = opts.textEncoders ?? env.FLUX_TEXT_ENCODERS;
  if (te && !isDir(te) && REPO_ID.test(te)) te = snapshotOrThrow(te, env);
  if (!te) te = cachedSnapshot(DEFAULT_REPO, env) ?? undefined;
  if (!te) {
    throw new ModelNotFoundError(
      `a BFL transformer file (${basename(file)}) needs the text encoders and tokenizers of a diffusers FLUX.1 folder: ` +
        `pass --text-encoders DIR (or set FLUX_TEXT_ENCODERS); none found in the Hugging Face cache (${hfCacheDir(env)}). ` +
        `Get them with: pnpm flux download ${DEFAULT_REPO}`, 'MODEL_COMPONENT_MISSING',
    );
  }
  checkComponents(te, TEXT_PARTS, te);
  const variant = bflVariant(file);
  return {
    layout: 'bfl',
    name: basename(file),
    variant,
    textEncoderRoot: te,
    transformer: resolve(file),
    vae: resolve(vae),
    scheduler: MODEL_DEFAULTS[variant].scheduler,
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
        `download FLUX.1 [schnell] with \`pnpm flux download\` or pass --model PATH`,
    );
  }
  if (isDir(given)) {
    if (isFile(join(given, 'model_index.json'))) return diffusersLocation(resolve(given), 'diffusers', given);
    // A repo cache folder (models--org--name) or a snapshots/ folder: take its newest snapshot.
    const snaps = isDir(join(given, 'snapshots')) ? join(given, 'snapshots') : basename(given) === 'snapshots' ? given : null;
    if (snaps) {
      const revs = readdirSync(snaps).map((r) => join(snaps, r)).filter((p) => isFile(join(p, 'model_index.json')));
      revs.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
      if (revs[0]) return diffusersLocation(revs[0], 'hf-cache', given);
    }
    const st = readdirSync(given).filter((f) => /^flux1-.*\.safetensors$/.test(f));
    if (st.length === 1) return bflLocation(join(given, st[0]!), opts, env);
    throw new ModelNotFoundError(
      `${given} is not a FLUX.1 model folder: no model_index.json (diffusers layout) and no single flux1-*.safetensors file; ` +
        'pass a diffusers FLUX.1 folder, a BFL flux1-schnell.safetensors file, or download one with `pnpm flux download`',
    );
  }
  if (isFile(given)) {
    if (!given.endsWith('.safetensors')) {
      throw new ModelNotFoundError(`${given} is not a .safetensors file; pass a diffusers FLUX.1 folder or a BFL flux1-*.safetensors file`);
    }
    return bflLocation(given, opts, env);
  }
  if (REPO_ID.test(given) && !given.startsWith('.')) {
    return diffusersLocation(snapshotOrThrow(given, env), 'hf-cache', given);
  }
  throw new ModelNotFoundError(`model ${given} not found (no such file or folder, and not a repo id in the Hugging Face cache ${hfCacheDir(env)}); download one with \`pnpm flux download\``);
}
