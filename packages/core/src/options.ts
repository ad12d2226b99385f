/**
 * Every default, range and allowed value of the public request and of the two FLUX.1 variants, in ONE place.
 *
 * Two sets of defaults exist on purpose:
 * - `SEED_API_DEFAULTS`: the HTTP API (the DeepInfra FLUX-1-schnell request) must use these, whatever the model.
 * - `MODEL_DEFAULTS.{schnell,dev}`: what the model authors recommend (BFL cli.py / diffusers); the library and
 *   CLI may start from these instead.
 * Everything here is frozen.
 */

/** Image sizes (pixels) accepted for `width` and `height`. */
export const ALLOWED_SIZES = Object.freeze([128, 256, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024] as const);
export type AllowedSize = (typeof ALLOWED_SIZES)[number];

/**
 * Image sides the CLI and the library accept: any multiple of 16 from 128 to 2048 pixels (1344x768, 1216x832, ...).
 * The HTTP API keeps its list (ALLOWED_SIZES); the library also takes sides down to 16 for tiny test models.
 */
export const IMAGE_SIDE = Object.freeze({ min: 128, max: 2048, multiple: 16 });

/** What is wrong with an image side under IMAGE_SIDE's rule (`min` may be lowered), or null when it is fine. */
export function imageSideProblem(v: number, min: number = IMAGE_SIDE.min): string | null {
  if (!Number.isInteger(v)) return `must be an integer number of pixels, got ${v}`;
  if (v < min || v > IMAGE_SIDE.max) return `must be from ${min} to ${IMAGE_SIDE.max} pixels, got ${v}`;
  if (v % IMAGE_SIDE.multiple !== 0) {
    const lo = Math.max(min, v - (v % IMAGE_SIDE.multiple));
    return `must be a multiple of ${IMAGE_SIDE.multiple} pixels, got ${v} (nearest: ${lo} or ${Math.min(IMAGE_SIDE.max, lo + IMAGE_SIDE.multiple)})`;
  }
  return null;
}

/** Longest accepted `prompt` / `negative_prompt`, in UTF-16 code units (JS string length). */
export const PROMPT_MAX_CHARS = 10_000;

/** Inclusive numeric ranges of the request fields. */
export const RANGES = Object.freeze({
  num_inference_steps: Object.freeze({ min: 1, max: 512, integer: true }),
  guidance_scale: Object.freeze({ min: 1, max: 20, integer: false }),
  strength: Object.freeze({ min: 0, max: 1, integer: false }),
  num_images: Object.freeze({ min: 1, max: 4, integer: true }),
  /** Accepted seeds: integers 0 .. 2^53-1 (every integer a JSON number holds exactly). */
  seed: Object.freeze({ min: 0, max: Number.MAX_SAFE_INTEGER, integer: true }),
});

/** A seed drawn when the request has none lies in 0 .. 2^32-1. */
export const RANDOM_SEED_MAX = 0xffff_ffff;

/** Defaults of the public HTTP request (the seed API); the server must use exactly these. */
export const SEED_API_DEFAULTS = Object.freeze({
  num_inference_steps: 25,
  guidance_scale: 7.5,
  strength: 0.8,
  width: 512 as AllowedSize,
  height: 512 as AllowedSize,
  num_images: 1,
});

export type FluxVariant = 'schnell' | 'dev';

/** Values of scheduler/scheduler_config.json in the black-forest-labs/FLUX.1-{schnell,dev} repositories. */
export interface SchedulerConfig {
  readonly num_train_timesteps: number;
  readonly shift: number;
  readonly use_dynamic_shifting: boolean;
  readonly base_shift: number;
  readonly max_shift: number;
  readonly base_image_seq_len: number;
  readonly max_image_seq_len: number;
}

export interface ModelDefaults {
  /** Recommended number of sampling steps. */
  readonly num_inference_steps: number;
  /** Distilled guidance (dev only; schnell has no guidance input, the value is ignored). */
  readonly guidance_scale: number;
  /** T5 token length (BFL cli.py: schnell 256, dev 512). */
  readonly max_sequence_length: number;
  /** Whether the transformer has a guidance embedding. */
  readonly guidance_embed: boolean;
  readonly scheduler: SchedulerConfig;
}

const SCHNELL_SCHEDULER: SchedulerConfig = Object.freeze({
  num_train_timesteps: 1000,
  shift: 1.0,
  use_dynamic_shifting: false,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
});

const DEV_SCHEDULER: SchedulerConfig = Object.freeze({ ...SCHNELL_SCHEDULER, shift: 3.0, use_dynamic_shifting: true });

/** The model authors' recommendations (BFL src/flux/cli.py, diffusers FluxPipeline). */
export const MODEL_DEFAULTS: Readonly<Record<FluxVariant, ModelDefaults>> = Object.freeze({
  schnell: Object.freeze({
    num_inference_steps: 4,
    guidance_scale: 3.5,
    max_sequence_length: 256,
    guidance_embed: false,
    scheduler: SCHNELL_SCHEDULER,
  }),
  dev: Object.freeze({
    num_inference_steps: 50,
    guidance_scale: 3.5,
    max_sequence_length: 512,
    guidance_embed: true,
    scheduler: DEV_SCHEDULER,
  }),
});

/** Which defaults fill fields a request leaves out: the HTTP API's (`'api'`) or a model's recommendation. */
export type DefaultsProfile = 'api' | FluxVariant;

export interface RequestDefaults {
  readonly num_inference_steps: number;
  readonly guidance_scale: number;
  readonly strength: number;
  readonly width: AllowedSize;
  readonly height: AllowedSize;
  readonly num_images: number;
}

/** The defaults a profile applies: the seed API's, or the seed API's with the model's steps and guidance. */
export function requestDefaults(profile: DefaultsProfile = 'api'): RequestDefaults {
  if (profile === 'api') return SEED_API_DEFAULTS;
  const m = MODEL_DEFAULTS[profile];
  return Object.freeze({
    ...SEED_API_DEFAULTS,
    num_inference_steps: m.num_inference_steps,
    guidance_scale: m.guidance_scale,
  });
}
