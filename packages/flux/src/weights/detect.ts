/**
 * What is this checkpoint? Tell the FLUX.1 formats apart by their key names alone (dtype-agnostic, so bf16, fp32 and
 * fp8 files of a format look the same), then compare keys and shapes with the expected architecture.
 */
import { CLIP_L, FLUX_DEV, FLUX_SCHNELL, FLUX_VAE, T5_XXL, type FluxVariant } from '../transformer/config.ts';
import {
  bflTransformerArchitecture,
  bflVaeArchitecture,
  clipTextArchitecture,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  type Architecture,
  type WeightsFormat,
} from './architectures.ts';

export interface Detection {
  format: WeightsFormat | 'unknown';
  /** Transformers only: `dev` when the checkpoint has a guidance embedder. */
  variant?: FluxVariant;
  /** Prefix stripped from the keys that carry it ('' when none). */
  prefix: string;
}

/**
 * Key prefixes each format may come wrapped in: ComfyUI / original-repo single files (`model.diffusion_model.`),
 * LDM-style VAEs (diffusers single_file_utils LDM_VAE_KEYS), CLIPTextModel files saved by transformers 4.x.
 */
const PREFIXES: Record<WeightsFormat, readonly string[]> = {
  'bfl-transformer': ['', 'model.diffusion_model.'],
  'diffusers-transformer': [''],
  'bfl-vae': ['', 'first_stage_model.', 'vae.'],
  'diffusers-vae': [''],
  't5-encoder': [''],
  'clip-text': ['', 'text_model.'],
};

let referenceKeys: Map<WeightsFormat, Set<string>> | undefined;

/** Full-size key names per format (dev for transformers: a superset of schnell), optional keys included. */
function formatKeys(): Map<WeightsFormat, Set<string>> {
  if (!referenceKeys) {
    const archs: Architecture[] = [
      bflTransformerArchitecture(FLUX_DEV),
      diffusersTransformerArchitecture(FLUX_DEV),
      bflVaeArchitecture(FLUX_VAE),
      diffusersVaeArchitecture(FLUX_VAE),
      t5EncoderArchitecture(T5_XXL),
      clipTextArchitecture(CLIP_L),
    ];
    referenceKeys = new Map(archs.map((a) => [a.format, new Set([...a.tensors.keys(), ...a.optional.keys()])]));
  }
  return referenceKeys;
}

const GUIDANCE = /^(guidance_in\.|time_text_embed\.guidance_embedder\.)/;

/**
 * Pick the format (and prefix) under which most of the checkpoint's keys are known FLUX.1 key names.
 * It needs at least 2 known keys making up at least half of the keys carrying that prefix; otherwise `unknown`.
 */
export function detectFormat(keys: Iterable<string>): Detection {
  const all = [...keys];
  let best: { format: WeightsFormat; prefix: string; score: number } | undefined;
  for (const [format, known] of formatKeys()) {
    for (const prefix of PREFIXES[format]) {
      let carrying = 0;
      let score = 0;
      for (const k of all) {
        if (!k.startsWith(prefix)) continue;
        carrying++;
        if (known.has(k.slice(prefix.length))) score++;
      }
      if (score < 2 || score * 2 < carrying) continue;
      if (!best || score > best.score) best = { format, prefix, score };
    }
  }
  if (!best) return { format: 'unknown', prefix: '' };
  const detection: Detection = { format: best.format, prefix: best.prefix };
  if (best.format === 'bfl-transformer' || best.format === 'diffusers-transformer') {
    const stripped = all.filter((k) => k.startsWith(best.prefix)).map((k) => k.slice(best.prefix.length));
    detection.variant = stripped.some((k) => GUIDANCE.test(k)) ? 'dev' : 'schnell';
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

/** Default full-size FLUX.1 architecture of a format (transformers: by variant). */
export function defaultArchitecture(format: WeightsFormat, variant: FluxVariant = 'schnell'): Architecture {
  const flux = variant === 'dev' ? FLUX_DEV : FLUX_SCHNELL;
  switch (format) {
    case 'bfl-transformer': return bflTransformerArchitecture(flux);
    case 'diffusers-transformer': return diffusersTransformerArchitecture(flux);
    case 'bfl-vae': return bflVaeArchitecture(FLUX_VAE);
    case 'diffusers-vae': return diffusersVaeArchitecture(FLUX_VAE);
    case 't5-encoder': return t5EncoderArchitecture(T5_XXL);
    case 'clip-text': return clipTextArchitecture(CLIP_L);
  }
}

export interface Mismatch {
  key: string;
  expected: number[];
  actual: number[];
}

export interface ArchitectureDiff {
  /** Expected keys the checkpoint lacks. */
  missing: string[];
  /** Checkpoint keys the architecture does not have. */
  unexpected: string[];
  /** Keys present in both with different shapes. */
  mismatched: Mismatch[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Compare a checkpoint's key -> shape map with an architecture (lists in the architecture's / file's order). */
export function compareArchitecture(actual: ReadonlyMap<string, { shape: readonly number[] }>, arch: Architecture): ArchitectureDiff {
  const missing: string[] = [];
  const unexpected: string[] = [];
  const mismatched: Mismatch[] = [];
  for (const [key, expected] of arch.tensors) {
    const t = actual.get(key);
    if (!t) missing.push(key);
    else if (!sameShape(t.shape, expected)) mismatched.push({ key, expected: [...expected], actual: [...t.shape] });
  }
  for (const [key, t] of actual) {
    if (arch.tensors.has(key)) continue;
    const opt = arch.optional.get(key);
    if (!opt) unexpected.push(key);
    else if (!sameShape(t.shape, opt.shape)) mismatched.push({ key, expected: [...opt.shape], actual: [...t.shape] });
  }
  return { missing, unexpected, mismatched };
}
