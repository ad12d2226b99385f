/**
 * The FLUX.1 pipeline: encode the prompt (T5 + CLIP) -> denoise (the transformer under core's Euler loop) ->
 * decode (the VAE), as diffusers' FluxPipeline / FluxImg2ImgPipeline, seed for seed:
 *
 * - noise: `torch.Generator("cpu").manual_seed(seed)` reproduced by core's TorchGenerator; the whole batch's
 *   [B, 16, H/8, W/8] latents are ONE draw; for image-to-image the VAE latent is sampled from the generator
 *   first, then the noise (FluxImg2ImgPipeline.prepare_latents order);
 * - schedule: core's getSchedule with the folder's scheduler config; img2img slice: core's img2imgPlan;
 * - images: (x / 2 + 0.5).clamp(0, 1) * 255 rounded half to even (output_type="pil").
 *
 * Stages run one at a time: T5 + CLIP (streamed per layer), then the transformer (streamed per block, or resident),
 * then the VAE; unless `keepLoaded`, each is closed before the next loads, so peak memory is the largest stage.
 * Each stage is also usable alone: `encodePrompt`, `denoiseLatents`, `decodeLatents`, `encodeImage`.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  FluxError,
  MODEL_DEFAULTS,
  TorchGenerator,
  denoise,
  getSchedule,
  imageIds,
  imageSeqLen,
  img2imgPlan,
  latentShape,
  noiseLatents,
  normalizeSeed,
  packLatents,
  textIds,
  unpackLatents,
  type FluxVariant,
  type SchedulerConfig,
} from '@flux-ts/core';
import { imageToRgbBytes, rgbBytesToImage, type AutoEncoder, type TilingChoice } from '../autoencoder/autoencoder.ts';
import { decodeImage } from '../image/decode.ts';
import { encodePng } from '../image/png.ts';
import { resizeLanczos } from '../image/resize.ts';
import type { RgbImage } from '../image/types.ts';
import { locateModel, type LocateOptions, type ModelLocation } from './model-location.ts';
import { openAutoEncoder, openTextEncoders, openTransformer, verifyComponents, type OpenTransformer } from './components.ts';
import { FLUX_TS_VERSION, pngTextFor, type GenerationMetadata } from './metadata.ts';
import { PromptEmbeddingCache, type PromptEmbeddings } from '../text-encoders/prompt-cache.ts';
import type { TextEncoders } from '../text-encoders/text-encoders.ts';
import type { Residency } from '../runtime/backend.ts';

export type Stage = 'text' | 'image-encode' | 'denoise' | 'decode';

export interface StepInfo {
  step: number;
  total: number;
  /** Milliseconds of this step. */
  stepMs: number;
  /** Milliseconds since the denoising loop started. */
  elapsedMs: number;
}

export interface GenerateOptions {
  prompt: string;
  /** Pixels, a multiple of 16 (default 512). */
  width?: number;
  height?: number;
  /** Default: the model's recommendation (schnell 4, dev 50). */
  steps?: number;
  /** Integer (number, bigint or decimal string) as torch.Generator.manual_seed takes; default: random 0..2^32-1. */
  seed?: number | bigint | string;
  /** Distilled guidance (dev only; ignored by schnell). Default 3.5. */
  guidance?: number;
  /** Images from the one prompt (one noise draw for the batch, as diffusers' num_images_per_prompt). Default 1. */
  numImages?: number;
  /** T5 token length; default the model's (schnell 256, dev 512). */
  maxSequenceLength?: number;
  /** Image-to-image input: PNG/JPEG bytes or decoded RGB; resized to width x height with PIL's LANCZOS. */
  image?: Uint8Array | RgbImage;
  /** Image-to-image strength in [0, 1] (default 0.8 with an image). */
  strength?: number;
  /**
   * Initial noise instead of the seed's draw (research use): [B, 16, H/8, W/8] float32, e.g. the `noise` tensor
   * `flux-ts noise` writes. With an image it replaces the noise only (the VAE sample still uses the seed).
   */
  latents?: Float32Array | { data: Float32Array; shape: readonly number[] };
  onStep?: (info: StepInfo) => void | Promise<void>;
  onStage?: (stage: Stage, event: 'start' | 'end', ms?: number) => void;
  signal?: AbortSignal;
  /** Recorded in the PNG metadata (e.g. the input file's name). */
  imageName?: string;
  /** The model name recorded in the PNG metadata (default the location's name; a server gives its model id). */
  modelName?: string;
  latentsName?: string;
}

export interface GeneratedImage {
  index: number;
  width: number;
  height: number;
  /** RGB bytes, row-major. */
  rgb: Uint8Array;
  /** PNG file bytes carrying the generation parameters (text chunks). */
  png: Buffer;
  metadata: GenerationMetadata;
}

export interface StageTimings {
  textMs: number;
  imageEncodeMs: number;
  denoiseMs: number;
  decodeMs: number;
  totalMs: number;
  stepMs: number[];
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** The seed used (number when it fits in 2^53, else a decimal string). */
  seed: number | string;
  width: number;
  height: number;
  /** Steps requested (img2img runs fewer: `stepsRun`). */
  steps: number;
  stepsRun: number;
  guidance: number;
  strength?: number;
  maxSequenceLength: number;
  variant: FluxVariant;
  model: string;
  timings: StageTimings;
}

export interface PipelineOptions {
  /**
   * 'streamed': one transformer block on the device at a time; 'resident': all weights loaded once;
   * 'auto' (default): resident on the native backend with a GPU, streamed elsewhere (transformer/load.ts).
   */
  transformer?: Residency | 'auto';
  /** Text encoders: 'streamed' (default) or 'resident'. */
  textEncoders?: Residency;
  /** Keep every stage loaded between calls (fast repeated generation when memory allows). Default false. */
  keepLoaded?: boolean;
  /** Prompt embeddings kept on the host for repeated prompts. Default 8. */
  promptCacheSize?: number;
  /**
   * VAE tiling (diffusers enable_tiling): `'auto'` (default) tiles only when the estimated decode would not fit the
   * backend's memory (the wasm heap fails silently past ~3.9 GiB); `true` / `false` force it.
   */
  vaeTiling?: TilingChoice;
}

/** A request the library rejects (bad size, steps, strength, latents...). */
export class GenerateError extends FluxError {
  constructor(message: string) {
    super('INVALID_GENERATE_OPTIONS', message);
    this.name = 'GenerateError';
  }
}

function randomSeed(): number {
  const a = new Uint32Array(1);
  globalThis.crypto.getRandomValues(a);
  return a[0]!;
}

function checkInt(name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new GenerateError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
}

const now = () => performance.now();

export class FluxPipeline {
  readonly location: ModelLocation;
  readonly options: Required<PipelineOptions>;
  readonly promptCache: PromptEmbeddingCache;
  private textEncoders: TextEncoders | null = null;
  private transformer: OpenTransformer | null = null;
  private vae: AutoEncoder | null = null;

  constructor(location: ModelLocation, options: PipelineOptions = {}) {
    this.location = location;
    this.options = {
      transformer: options.transformer ?? 'auto',
      textEncoders: options.textEncoders ?? 'streamed',
      keepLoaded: options.keepLoaded ?? false,
      promptCacheSize: options.promptCacheSize ?? 8,
      vaeTiling: options.vaeTiling ?? 'auto',
    };
    this.promptCache = new PromptEmbeddingCache(this.options.promptCacheSize);
  }

  /**
   * Finds the model (a diffusers folder, BFL files, the HF cache; see model-location.ts): every component's format,
   * the variant and the transformer's dims are read from the headers here, so the defaults are the model's own.
   */
  static load(model?: string | ModelLocation | LocateOptions, options: PipelineOptions = {}): FluxPipeline {
    const loc = typeof model === 'object' && 'layout' in model ? model : locateModel(typeof model === 'string' ? { model } : model ?? {});
    return new FluxPipeline(loc, options);
  }

  /** Checks every component's keys and shapes against its config, from the headers (no weights): a missing or corrupt part fails here. */
  async verify(): Promise<void> {
    await verifyComponents(this.location);
  }

  /** The transformer's variant, from its header (model discovery). */
  get variant(): FluxVariant {
    return this.location.variant;
  }

  get scheduler(): SchedulerConfig {
    return this.location.scheduler;
  }

  /** The model authors' defaults (steps, guidance, T5 length) for this variant. */
  get defaults() {
    return MODEL_DEFAULTS[this.variant];
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 1: text

  /** T5 + CLIP embeddings of one prompt (batch 1, host arrays), from the cache when seen before. */
  async encodePrompt(prompt: string, maxSequenceLength = this.defaults.max_sequence_length): Promise<PromptEmbeddings> {
    const key = { prompt, variant: this.location.name, t5MaxLength: maxSequenceLength, clipMaxLength: 77 };
    const hit = this.promptCache.get(key);
    if (hit) return hit;
    const enc = this.textEncoders ?? (await openTextEncoders(this.location, this.options.textEncoders));
    try {
      const emb = await enc.encode(prompt, { t5MaxLength: maxSequenceLength });
      this.promptCache.set(key, emb);
      return emb;
    } finally {
      if (this.options.keepLoaded) this.textEncoders = enc;
      else await enc.close();
    }
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 2: transformer

  private async withTransformer<T>(fn: (t: OpenTransformer) => Promise<T>): Promise<T> {
    const t = this.transformer ?? (await openTransformer(this.location, this.options.transformer));
    try {
      return await fn(t);
    } finally {
      if (this.options.keepLoaded) this.transformer = t;
      else await t.close();
    }
  }

  /**
   * The Euler loop from packed latents [B, L, 64] over `sigmas` (N+1 values), conditioned on one prompt's
   * embeddings (repeated over the batch). Returns new packed latents; `latents` is not disposed.
   */
  async denoiseLatents(opts: {
    embeddings: PromptEmbeddings;
    latents: tf.Tensor;
    width: number;
    height: number;
    sigmas: readonly number[];
    guidance?: number;
    onStep?: GenerateOptions['onStep'];
    signal?: AbortSignal;
  }): Promise<tf.Tensor> {
    const { embeddings: e, latents, width, height } = opts;
    const b = latents.shape[0]!;
    const [, l, d] = e.promptEmbedsShape;
    return this.withTransformer(async (t) => {
      const txt = tf.tidy(() => tf.tile(tf.tensor3d(e.promptEmbeds, [1, l, d]), [b, 1, 1])); // [1,L,D] -> [B,L,D]
      const y = tf.tidy(() => tf.tile(tf.tensor2d(e.pooled, e.pooledShape), [b, 1])); // [1,768] -> [B,768]
      const imgIds = imageIds(width, height);
      const txtIds = textIds(l);
      const start = now();
      let last = start;
      try {
        return await denoise({
          model: t.model,
          img: latents,
          img_ids: imgIds,
          txt,
          txt_ids: txtIds,
          y,
          sigmas: opts.sigmas,
          guidance: t.model.guidanceEmbed ? (opts.guidance ?? this.defaults.guidance_scale) : undefined,
          signal: opts.signal,
          onStep: opts.onStep
            ? async (step, total) => {
                const tNow = now();
                await opts.onStep!({ step, total, stepMs: tNow - last, elapsedMs: tNow - start });
                last = tNow;
              }
            : undefined,
        });
      } finally {
        tf.dispose([txt, y, imgIds, txtIds]);
      }
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 3: autoencoder

  private async withVae<T>(fn: (vae: AutoEncoder) => Promise<T> | T): Promise<T> {
    const vae = this.vae ?? (await openAutoEncoder(this.location));
    try {
      return await fn(vae);
    } finally {
      if (this.options.keepLoaded) this.vae = vae;
      else vae.dispose();
    }
  }

  /** Packed latents [B, L, 64] -> one RGB image per batch entry (diffusers' "pil" rounding). */
  async decodeLatents(latents: tf.Tensor, width: number, height: number): Promise<RgbImage[]> {
    return this.withVae((vae) => {
      const out: RgbImage[] = [];
      const z = unpackLatents(latents, width, height); // [B, L, 64] -> [B, 16, H/8, W/8]
      try {
        const b = z.shape[0];
        for (let i = 0; i < b; i++) {
          const zi = tf.slice(z, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
          let img: tf.Tensor4D | undefined;
          try {
            img = vae.decode(zi, { tiling: this.options.vaeTiling });
            out.push(imageToRgbBytes(img));
          } finally {
            zi.dispose();
            img?.dispose();
          }
        }
      } finally {
        z.dispose();
      }
      return out;
    });
  }

  /**
   * An RGB image (already width x height) -> scaled VAE latent [1, 16, H/8, W/8], sampled with `noise`
   * (latent_dist.sample) or the mean when no noise is given.
   */
  async encodeImage(image: RgbImage, noise?: Float32Array): Promise<tf.Tensor4D> {
    return this.withVae((vae) => {
      const x = rgbBytesToImage(image.data, image.width, image.height);
      try {
        return vae.encode(x, noise ? { mode: 'sample', noise } : { mode: 'mean' });
      } finally {
        x.dispose();
      }
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Everything

  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const t0 = now();
    const d = this.defaults;
    if (typeof opts.prompt !== 'string') throw new GenerateError('prompt must be a string');
    const width = opts.width ?? 512;
    const height = opts.height ?? 512;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      checkInt(name, v, 16, 16384);
      if (v % 16 !== 0) throw new GenerateError(`${name} must be a multiple of 16 pixels, got ${v}`);
    }
    const steps = opts.steps ?? d.num_inference_steps;
    checkInt('steps', steps, 1, 1000);
    const numImages = opts.numImages ?? 1;
    checkInt('numImages', numImages, 1, 64);
    const maxSeq = opts.maxSequenceLength ?? d.max_sequence_length;
    checkInt('maxSequenceLength', maxSeq, 1, 512);
    const guidance = opts.guidance ?? d.guidance_scale;
    if (!Number.isFinite(guidance)) throw new GenerateError(`guidance must be a finite number, got ${guidance}`);
    const seedBig = normalizeSeed(opts.seed ?? randomSeed());
    const seed = seedBig <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seedBig) : seedBig.toString();
    const strength = opts.image !== undefined ? (opts.strength ?? 0.8) : undefined;
    if (strength !== undefined && !(Number.isFinite(strength) && strength >= 0 && strength <= 1)) {
      throw new GenerateError(`strength must be a number from 0 to 1, got ${strength}`);
    }
    const shape = latentShape(width, height, numImages); // [B, 16, H/8, W/8]
    const n = shape.reduce((a, b) => a * b, 1);
    let givenNoise: Float32Array | undefined;
    if (opts.latents !== undefined) {
      const data = opts.latents instanceof Float32Array ? opts.latents : opts.latents.data;
      const given = opts.latents instanceof Float32Array ? undefined : opts.latents.shape;
      const ok = data.length === n && (given === undefined || given.reduce((a, b) => a * b, 1) === n && given[given.length - 1] === shape[3] && given[given.length - 2] === shape[2]);
      if (!ok) {
        throw new GenerateError(`latents ${given ? `[${given.join(', ')}]` : `of ${data.length} values`} do not fit a ${numImages}x ${width}x${height} generation: expected [${shape.join(', ')}] (${n} values); make them with flux-ts noise --shape ${shape.join(',')}`);
      }
      givenNoise = data;
    }
    let input: RgbImage | undefined;
    if (opts.image !== undefined) {
      const img = opts.image instanceof Uint8Array ? decodeImage(opts.image, opts.imageName ?? 'image') : opts.image;
      input = img.width === width && img.height === height ? img : resizeLanczos(img, width, height);
    }
    const signal = opts.signal;
    const checkAbort = () => {
      if (signal?.aborted) throw new FluxError('aborted', 'generation aborted', { cause: signal.reason });
    };

    const timings: StageTimings = { textMs: 0, imageEncodeMs: 0, denoiseMs: 0, decodeMs: 0, totalMs: 0, stepMs: [] };
    const stage = async <T>(name: Stage, fn: () => Promise<T>): Promise<{ value: T; ms: number }> => {
      checkAbort();
      opts.onStage?.(name, 'start');
      const s = now();
      const value = await fn();
      const ms = now() - s;
      opts.onStage?.(name, 'end', ms);
      return { value, ms };
    };

    // 1. prompt
    const text = await stage('text', () => this.encodePrompt(opts.prompt, maxSeq));
    timings.textMs = text.ms;

    // 2. start latents: the generator draws the VAE sample first (img2img), then the noise (diffusers order).
    const sigmas = getSchedule(steps, imageSeqLen(width, height), this.scheduler);
    const gen = new TorchGenerator(seedBig);
    const plan = strength !== undefined ? img2imgPlan(sigmas, strength) : undefined;
    let start: tf.Tensor | undefined;
    let runSigmas: readonly number[] = sigmas;
    try {
      if (input && plan) {
        const vaeNoise = gen.randn(latentShape(width, height, 1));
        const noise = givenNoise ?? gen.randn(shape);
        runSigmas = plan.sigmas;
        if (plan.usesImage) {
          const enc = await stage('image-encode', () => this.encodeImage(input!, vaeNoise));
          timings.imageEncodeMs = enc.ms;
          const x0 = enc.value;
          start = tf.tidy(() => {
            const x0b = numImages > 1 ? tf.tile(x0, [numImages, 1, 1, 1]) : x0; // [1,16,h,w] -> [B,16,h,w]
            const noised = plan.steps > 0 ? noiseLatents(x0b, tf.tensor(noise, shape, 'float32'), plan.sigmaStart) : x0b.clone();
            return packLatents(noised);
          });
          x0.dispose();
        } else {
          start = tf.tidy(() => packLatents(tf.tensor(noise, shape, 'float32')));
        }
      } else {
        const noise = givenNoise ?? gen.randn(shape);
        start = tf.tidy(() => packLatents(tf.tensor(noise, shape, 'float32'))); // [B,16,h,w] -> [B,L,64]
      }

      // 3. transformer
      let final: tf.Tensor;
      if (runSigmas.length > 1) {
        const den = await stage('denoise', () =>
          this.denoiseLatents({
            embeddings: text.value,
            latents: start!,
            width,
            height,
            sigmas: runSigmas,
            guidance,
            signal,
            onStep: async (info) => {
              timings.stepMs.push(info.stepMs);
              await opts.onStep?.(info);
            },
          }),
        );
        timings.denoiseMs = den.ms;
        final = den.value;
      } else {
        final = start.clone();
      }

      // 4. autoencoder
      let rgb: RgbImage[];
      try {
        const dec = await stage('decode', () => this.decodeLatents(final, width, height));
        timings.decodeMs = dec.ms;
        rgb = dec.value;
      } finally {
        final.dispose();
      }

      timings.totalMs = now() - t0;
      const images = rgb.map((im, index): GeneratedImage => {
        const metadata: GenerationMetadata = {
          prompt: opts.prompt,
          seed,
          steps,
          guidance,
          width,
          height,
          model: opts.modelName ?? this.location.name,
          variant: this.variant,
          max_sequence_length: maxSeq,
          num_images: numImages,
          index,
          ...(strength !== undefined ? { strength } : {}),
          ...(opts.imageName ? { image: opts.imageName } : {}),
          ...(opts.latentsName ? { latents: opts.latentsName } : {}),
          version: FLUX_TS_VERSION,
        };
        return { index, width: im.width, height: im.height, rgb: im.data, png: encodePng(im, pngTextFor(metadata)), metadata };
      });
      return {
        images,
        seed,
        width,
        height,
        steps,
        stepsRun: runSigmas.length - 1,
        guidance,
        ...(strength !== undefined ? { strength } : {}),
        maxSequenceLength: maxSeq,
        variant: this.variant,
        model: this.location.name,
        timings,
      };
    } finally {
      start?.dispose();
    }
  }

  /** Frees every loaded stage (with keepLoaded) and the prompt cache. */
  async dispose(): Promise<void> {
    await this.textEncoders?.close();
    await this.transformer?.close();
    this.vae?.dispose();
    this.textEncoders = null;
    this.transformer = null;
    this.vae = null;
    this.promptCache.clear();
  }
}
