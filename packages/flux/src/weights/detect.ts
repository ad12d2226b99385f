/**
 * What is this checkpoint? Decided from its header alone, once: the format (which model, which key layout) and the
 * key prefix, by key names (dtype-agnostic, so bf16, fp32 and fp8 files of a format look the same), and a
 * transformer's variant by its guidance embedder. File and folder names are never looked at.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FluxError } from '@flux-ts/core';
import { isDir } from '../shared/files.ts';
import type { FluxVariant } from '../transformer/config.ts';
import { defaultArchitecture } from './architectures.ts';
import { listCheckpoints, readCheckpointHeader, type CheckpointHeader } from './checkpoint.ts';
import type { WeightsFormat } from './layout.ts';

export interface Detection {
  format: WeightsFormat | 'unknown';
  /** Transformers only: `dev` when the checkpoint has a guidance embedder. */
  variant?: FluxVariant;
  /** Prefix carried by the format's keys ('' when none). */
  prefix: string;
}

/** The model a format holds. */
export const FORMAT_MODEL: Readonly<Record<WeightsFormat, ModelKind>> = Object.freeze({
  'bfl-transformer': 'transformer',
  'diffusers-transformer': 'transformer',
  'bfl-vae': 'vae',
  'diffusers-vae': 'vae',
  't5-encoder': 't5',
  'clip-text': 'clip',
});

export type ModelKind = 'transformer' | 'vae' | 't5' | 'clip';

/**
 * Key prefixes each format may come wrapped in: ComfyUI / original-repo single files (`model.diffusion_model.`),
 * LDM-style VAEs (diffusers single_file_utils LDM_VAE_KEYS), CLIPTextModel files saved by transformers 4.x.
 */
const PREFIXES: Readonly<Record<WeightsFormat, readonly string[]>> = {
  'bfl-transformer': ['', 'model.diffusion_model.'],
  'diffusers-transformer': [''],
  'bfl-vae': ['', 'first_stage_model.', 'vae.'],
  'diffusers-vae': [''],
  't5-encoder': [''],
  'clip-text': ['', 'text_model.'],
};

let known: { keys: Map<WeightsFormat, Set<string>>; guidance: Set<string> } | undefined;

/** Full-size key names per format (dev for transformers: a superset of schnell), and the dev-only keys. */
function knownKeys(): NonNullable<typeof known> {
  if (!known) {
    const keys = new Map<WeightsFormat, Set<string>>();
    const guidance = new Set<string>();
    for (const format of Object.keys(PREFIXES) as WeightsFormat[]) {
      const arch = defaultArchitecture(format, 'dev');
      keys.set(format, new Set([...arch.tensors.keys(), ...arch.optional.keys()]));
      if (FORMAT_MODEL[format] === 'transformer') {
        const schnell = defaultArchitecture(format, 'schnell').tensors;
        for (const k of arch.tensors.keys()) if (!schnell.has(k)) guidance.add(k);
      }
    }
    known = { keys, guidance };
  }
  return known;
}

/**
 * Pick the format (and prefix) under which most of the checkpoint's keys are known FLUX.1 key names.
 * It needs at least 2 known keys making up at least half of the keys carrying that prefix; otherwise `unknown`.
 */
export function detectFormat(keys: Iterable<string>): Detection {
  const all = [...keys];
  const { keys: byFormat, guidance } = knownKeys();
  let best: { format: WeightsFormat; prefix: string; score: number } | undefined;
  for (const [format, names] of byFormat) {
    for (const prefix of PREFIXES[format]) {
      let carrying = 0;
      let score = 0;
      for (const k of all) {
        if (!k.startsWith(prefix)) continue;
        carrying++;
        if (names.has(k.slice(prefix.length))) score++;
      }
      if (score < 2 || score * 2 < carrying) continue;
      if (!best || score > best.score) best = { format, prefix, score };
    }
  }
  if (!best) return { format: 'unknown', prefix: '' };
  const detection: Detection = { format: best.format, prefix: best.prefix };
  if (FORMAT_MODEL[best.format] === 'transformer') {
    detection.variant = all.some((k) => k.startsWith(best.prefix) && guidance.has(k.slice(best.prefix.length))) ? 'dev' : 'schnell';
  }
  return detection;
}

/** Remove `prefix` from the keys that carry it; others are kept as they are (and will be reported unexpected). */
export function stripPrefix<T>(tensors: ReadonlyMap<string, T>, prefix: string): Map<string, T> {
  if (!prefix) return new Map(tensors);
  const out = new Map<string, T>();
  for (const [k, v] of tensors) out.set(k.startsWith(prefix) ? k.slice(prefix.length) : k, v);
  return out;
}

/** Where one model's weights are, as their header says: what loaders and model discovery pass around. */
export interface WeightsLocation {
  /** The .safetensors file or index to open. */
  path: string;
  format: WeightsFormat;
  /** Key prefix of the model's tensors ('' for none). */
  prefix: string;
  /** A transformer's variant (guidance embedder or not). */
  variant?: FluxVariant;
  /** The `config.json` beside the weights (diffusers / transformers folders), when there is one. */
  config?: string;
}

const MODEL_NAMES: Record<ModelKind, string> = { transformer: 'FLUX transformer', vae: 'FLUX autoencoder', t5: 'T5 encoder', clip: 'CLIP text encoder' };

/**
 * The `model` checkpoint at `path` (a file, an index, or a folder: its one checkpoint, else the one of its
 * checkpoints whose header holds that model), with its format and prefix from the header. Synchronous, headers only.
 * Returns the header too (its shapes tell a BFL transformer's dims).
 */
export function locateWeights(path: string, model: ModelKind): { location: WeightsLocation; header: CheckpointHeader } {
  let found: { header: CheckpointHeader; det: Detection } | undefined;
  const candidates = isDir(path) ? listCheckpoints(path) : [];
  if (candidates.length > 1) {
    const matches: { header: CheckpointHeader; det: Detection }[] = [];
    for (const c of candidates) {
      const header = readCheckpointHeader(join(path, c));
      const det = detectFormat(header.tensors.keys());
      if (det.format !== 'unknown' && FORMAT_MODEL[det.format] === model) matches.push({ header, det });
    }
    if (matches.length !== 1) {
      throw new FluxError('WEIGHTS_NOT_FOUND', `${path} holds ${matches.length === 0 ? 'no' : matches.length} ${MODEL_NAMES[model]} checkpoint(s) among its ${candidates.length} (read from their headers); pass the file to use`);
    }
    found = matches[0];
  } else {
    const header = readCheckpointHeader(path);
    found = { header, det: detectFormat(header.tensors.keys()) };
  }
  const { header, det } = found!;
  if (det.format === 'unknown' || FORMAT_MODEL[det.format] !== model) {
    throw new FluxError('WEIGHTS_FORMAT', `${header.path} is not a ${MODEL_NAMES[model]} checkpoint: its keys look like ${det.format === 'unknown' ? 'no FLUX.1 component' : det.format}; pass the ${MODEL_NAMES[model]} weights (see pnpm flux inspect PATH)`);
  }
  const config = join(dirname(header.path), 'config.json');
  const location: WeightsLocation = {
    path: header.path,
    format: det.format,
    prefix: det.prefix,
    ...(det.variant ? { variant: det.variant } : {}),
    ...(!det.format.startsWith('bfl-') && existsSync(config) ? { config } : {}),
  };
  return { location, header };
}
