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
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import {
  AbortError,
  FluxError,
  MODEL_DEFAULTS,
  TorchGenerator,
  denoise,
  denoisedEstimate,
  getSchedule,
  imageIds,
  imageSeqLen,
  imageSideProblem,
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
import { downloadRepo, validateRepoId, DEFAULT_REPO } from '../hub/download.ts';
import { hfCacheDir } from '../hub/cache.ts';
import { hubEndpoint } from '../hub/http.ts';
import { decodeImage } from '../image/decode.ts';
import { encodePng } from '../image/png.ts';
import { resizeLanczos } from '../image/resize.ts';
import type { RgbImage } from '../image/types.ts';
import { currentBackend, ensureBackend, type Residency } from '../runtime/backend.ts';
import { checkKnownKeys } from '../shared/options.ts';
import { defaultResidency } from '../transformer/load.ts';
import { fluxParamSpec } from '../transformer/flux.ts';
import { diffusersLocation, locateModel, ModelNotFoundError, type LocateOptions, type ModelLocation } from './model-location.ts';
import { openAutoEncoder, openTextEncoders, openTransformer, verifyComponents, type OpenTransformer } from './components.ts';
import { fitLatentRgb, projectLatents, type LatentRgbFit, type LatentRgbProjection } from './latent-rgb.ts';
import { estimateGenerationMemory, type GenerationMemory } from './memory.ts';
import { FLUX_TS_VERSION, pngTextFor, type GenerationMetadata } from './metadata.ts';
import { stageReporter, type ProgressCallback, type ProgressEvent, type Stage } from './progress.ts';
import { PromptEmbeddingCache, type PromptEmbeddings } from '../text-encoders/prompt-cache.ts';
import type { TextEncoders } from '../text-encoders/text-encoders.ts';
import { PRECISION_CHOICES, resolvePrecision, type Precision, type PrecisionChoice } from '../runtime/bf16.ts';

export type { ProgressEvent, ProgressCallback, Stage } from './progress.ts';

export interface StepInfo {
  step: number;
  total: number;
  /** Milliseconds of this step. */
  stepMs: number;
  /** Milliseconds since the denoising loop started. */
  elapsedMs: number;
  /**
   * The packed latents after this step, [B, L, 64] (`unpackLatents(latents, width, height)` gives [B, 16, H/8, W/8]).
   * Owned by the pipeline and valid only during the call: read or clone it, never dispose it.
   */
  latents: tf.Tensor;
  /** The noise level `latents` are at (0 after the last step). */
  sigma: number;
  /** The transformer's velocity prediction of this step (owned by the pipeline, like `latents`). */
  velocity: tf.Tensor;
  /** The x0 estimate of this step, `latents - sigma * velocity`: a new tensor the caller owns (dispose it). */
  denoised(): tf.Tensor;
}

/**
 * After each step, like diffusers' `callback_on_step_end`. Return nothing to go on unchanged, or new latents of the
 * same shape to replace them: the pipeline then owns the returned tensor (it disposes it; do not dispose or reuse it).
 */
export type StepCallback = (info: StepInfo) => void | tf.Tensor | Promise<void | tf.Tensor>;

export type PreviewMode = 'proj' | 'vae';

/** One preview image per batch entry. */
export interface PreviewImage {
  /** The image's index in its batch. */
  index: number;
  width: number;
  height: number;
  /** RGB bytes, row-major. */
  rgb: Uint8Array;
  /** The same as a PNG file (no text chunks). */
  png: Buffer;
}

export interface StepPreview {
  step: number;
  total: number;
  mode: PreviewMode;
  images: PreviewImage[];
}

export interface PreviewOptions {
  /**
   * 'proj' (default): the x0 estimate through a fixed latent -> RGB linear map (latent-rgb.ts), at the latent's
   * resolution (W/8 x H/8), milliseconds. 'vae': a full VAE decode of the x0 estimate (as long as the final decode;
   * the last step's preview is the final image).
   */
  mode?: PreviewMode;
  /** A preview after every N-th step (default 1). */
  every?: number;
  onPreview: (preview: StepPreview) => void | Promise<void>;
}

export interface GenerateOptions {
  prompt: string;
  /** Pixels, a multiple of 16 from 16 to 2048 (default 512). */
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
  /**
   * Make only image `batchIndex` (0-based) of the `numImages` batch: the batch's noise is drawn as for the whole
   * batch and this image's share is denoised alone. Its metadata records the batch and index like the original.
   */
  batchIndex?: number;
  /** T5 token length; default the model's (schnell 256, dev 512). */
  maxSequenceLength?: number;
  /** Image-to-image input: PNG/JPEG bytes or decoded RGB; resized to width x height with PIL's LANCZOS. */
  image?: Uint8Array | RgbImage;
  /** Image-to-image strength in [0, 1] (default 0.8 with an image). */
  strength?: number;
  /**
   * Initial noise instead of the seed's draw (research use): [B, 16, H/8, W/8] float32, e.g. the `noise` tensor
   * `flux-ts noise` writes. With an image it replaces the noise only (the VAE sample still uses the seed).
   * The metadata then records the latents (name and sha256) and records the seed only where it was used.
   */
  latents?: Float32Array | { data: Float32Array; shape: readonly number[] };
  onStep?: StepCallback;
  /** Progress from inside every stage (text per block, transformer per block, VAE per level or tile, loading). */
  onProgress?: ProgressCallback;
  onStage?: (stage: Stage, event: 'start' | 'end', ms?: number) => void;
  /** Previews of the x0 estimate during denoising. */
  preview?: PreviewOptions;
  /** Stops the run at the next block or step: an AbortError (code 'aborted') wherever it happens. */
  signal?: AbortSignal;
  /** Recorded in the PNG metadata (e.g. the input file's name). */
  imageName?: string;
  /** The model name recorded in the PNG metadata (default the location's name; a server gives its model id). */
  modelName?: string;
  /** The latents file's name recorded in the metadata. */
  latentsName?: string;
}

const GENERATE_KEYS: readonly string[] = [
  'prompt', 'width', 'height', 'steps', 'seed', 'guidance', 'numImages', 'batchIndex', 'maxSequenceLength', 'image', 'strength',
  'latents', 'onStep', 'onProgress', 'onStage', 'preview', 'signal', 'imageName', 'modelName', 'latentsName',
];
const PREVIEW_KEYS: readonly string[] = ['mode', 'every', 'onPreview'];

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
  /** Loading resident weights before a stage (the VAE, a resident transformer) and fitting the proj preview map. */
  loadMs: number;
  textMs: number;
  imageEncodeMs: number;
  denoiseMs: number;
  decodeMs: number;
  /** Time spent making previews (inside denoiseMs). */
  previewMs: number;
  totalMs: number;
  stepMs: number[];
}

export interface GenerateResult {
  images: GeneratedImage[];
  /** The seed (number when it fits in 2^53, else a decimal string); see `seedUsed`. */
  seed: number | string;
  /** False when given latents replaced everything the seed draws (text-to-image from `latents`). */
  seedUsed: boolean;
  width: number;
  height: number;
  /** Steps requested (img2img runs fewer: `stepsRun`). */
  steps: number;
  stepsRun: number;
  guidance: number;
  strength?: number;
  maxSequenceLength: number;
  variant: FluxVariant;
  /** The precision the models computed in. */
  precision: Precision;
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
  /**
   * 'bf16': every matmul and convolution in bf16 on oneDNN / cuBLAS (weights from the file's bytes untouched, about
   * 2-3x faster on CPUs with AVX512_BF16), normalisation, softmax, RoPE, modulation and the sampler in float32, as
   * PyTorch's bf16 does; native tensorflow backend only. 'fp32': float32 throughout (seed-for-seed with diffusers in
   * float32). 'auto' (default): bf16 on the tensorflow backend, fp32 on wasm and cpu.
   */
  precision?: PrecisionChoice;
  /** The proj preview's latent -> RGB map; default: fitted to this model's VAE on first use (latent-rgb.ts). */
  latentRgb?: LatentRgbProjection;
}

const PIPELINE_KEYS: readonly string[] = ['transformer', 'textEncoders', 'keepLoaded', 'promptCacheSize', 'vaeTiling', 'precision', 'latentRgb'];

export interface LoadOptions extends PipelineOptions {
  /**
   * Fetch what is missing from the Hugging Face hub when the model is a repo id (as diffusers' `from_pretrained`):
   * `load` then returns a Promise. Default false (a model not in the cache is a ModelNotFoundError).
   */
  download?: boolean;
  /** Branch, tag or commit to download (default main). */
  revision?: string;
  /** The hub and cache (default $HF_ENDPOINT, $HF_TOKEN, the HF cache). */
  hub?: { endpoint?: string; token?: string | null; cacheDir?: string };
  /** Download progress (stage 'download', bytes). */
  onProgress?: ProgressCallback;
}

const LOAD_KEYS: readonly string[] = [...PIPELINE_KEYS, 'download', 'revision', 'hub', 'onProgress'];

/** A request the library rejects (bad size, steps, strength, latents...). */
export class GenerateError extends FluxError {
  constructor(message: string, code = 'INVALID_GENERATE_OPTIONS') {
    super(code, message);
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

/** The smallest side the library takes (tiny test models); the CLI's and the rule's minimum is 128 (IMAGE_SIDE). */
export const LIBRARY_MIN_SIDE = 16;

const now = () => performance.now();

export class FluxPipeline {
  readonly location: ModelLocation;
  readonly options: Required<Omit<PipelineOptions, 'latentRgb'>>;
  readonly promptCache: PromptEmbeddingCache;
  private textEncoders: TextEncoders | null = null;
  private transformer: OpenTransformer | null = null;
  private vae: AutoEncoder | null = null;
  private latentRgb: LatentRgbProjection | null;
  /** The last fit of the proj map (null until a proj preview needed one, or when `latentRgb` was given). */
  latentRgbFit: LatentRgbFit | null = null;

  constructor(location: ModelLocation, options: PipelineOptions = {}) {
    checkKnownKeys(options, PIPELINE_KEYS, 'FluxPipeline', 'INVALID_PIPELINE_OPTIONS');
    this.location = location;
    this.options = {
      transformer: options.transformer ?? 'auto',
      textEncoders: options.textEncoders ?? 'streamed',
      keepLoaded: options.keepLoaded ?? false,
      promptCacheSize: options.promptCacheSize ?? 8,
      vaeTiling: options.vaeTiling ?? 'auto',
      precision: options.precision ?? 'auto',
    };
    if (!PRECISION_CHOICES.includes(this.options.precision)) {
      throw new GenerateError(`precision must be one of ${PRECISION_CHOICES.join(', ')}, got ${String(this.options.precision)}`);
    }
    this.latentRgb = options.latentRgb ?? null;
    this.promptCache = new PromptEmbeddingCache(this.options.promptCacheSize);
  }

  /**
   * Finds the model (a diffusers folder, BFL files, the HF cache; see model-location.ts): every component's format,
   * the variant and the transformer's dims are read from the headers here, so the defaults are the model's own.
   * With `{ download: true }` a repo id missing from the cache is downloaded first (resumable, hash-checked) and a
   * Promise is returned; `await` works on either.
   */
  static load(model: string | ModelLocation | LocateOptions | undefined, options: LoadOptions & { download: true }): Promise<FluxPipeline>;
  static load(model?: string | ModelLocation | LocateOptions, options?: LoadOptions): FluxPipeline;
  static load(model?: string | ModelLocation | LocateOptions, options: LoadOptions = {}): FluxPipeline | Promise<FluxPipeline> {
    checkKnownKeys(options, LOAD_KEYS, 'FluxPipeline.load', 'INVALID_PIPELINE_OPTIONS');
    const { download, revision, hub, onProgress, ...pipelineOptions } = options;
    const locate = () => (typeof model === 'object' && 'layout' in model ? model : locateModel(typeof model === 'string' ? { model } : model ?? {}));
    if (!download) return new FluxPipeline(locate(), pipelineOptions);
    return (async () => {
      try {
        return new FluxPipeline(locate(), pipelineOptions);
      } catch (e) {
        const given = typeof model === 'string' ? model : typeof model === 'object' && !('layout' in model) ? model.model : undefined;
        const repo = given ?? DEFAULT_REPO;
        if (!(e instanceof ModelNotFoundError) || !/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(repo)) throw e;
        validateRepoId(repo);
        const env = typeof model === 'object' && !('layout' in model) ? (model.env ?? process.env) : process.env;
        const cacheDir = hub?.cacheDir ?? hfCacheDir(env);
        let done = 0;
        let completed = 0;
        let total = 0;
        const report = stageReporter(onProgress, 'download', repo, 'byte');
        const result = await downloadRepo({
          repo,
          revision,
          cacheDir,
          endpoint: hub?.endpoint ?? hubEndpoint(env),
          ...(hub?.token !== undefined ? { token: hub.token } : {}),
          env,
          onEvent: (ev) => {
            if (ev.type === 'plan') total = ev.downloadBytes;
            else if (ev.type === 'progress') {
              done = Math.max(done, completed + ev.bytes);
              report(done, total, { part: ev.path });
            } else if (ev.type === 'done' && ev.status === 'downloaded') completed = done;
          },
        });
        return new FluxPipeline(diffusersLocation(result.path, 'hf-cache', repo), pipelineOptions);
      }
    })();
  }

  /** The precision the stages load in: `options.precision`, with 'auto' decided by the backend in use. */
  get precision(): Precision {
    return resolvePrecision(this.options.precision);
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

  /**
   * Will a generation of this size fit the backend (the transformer stage's peak against the wasm heap or the
   * machine's memory)? `generate` refuses sizes that do not, before anything loads.
   */
  async memoryEstimate(opts: { width: number; height: number; numImages?: number; maxSequenceLength?: number }): Promise<GenerationMemory> {
    await ensureBackend();
    const info = currentBackend();
    const backend = info?.name === 'tensorflow' && /GPU/i.test(info.device) ? 'tensorflow-gpu' : (info?.name ?? tf.getBackend());
    const precision = this.precision;
    const p = this.location.transformer.params;
    const weightBytesBf16 = 2 * Object.values(fluxParamSpec(p)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    const residency = this.options.transformer === 'auto' ? defaultResidency(info, { precision, weightBytesBf16 }) : this.options.transformer;
    return estimateGenerationMemory(this.location.transformer.params, {
      width: opts.width,
      height: opts.height,
      batch: opts.numImages ?? 1,
      textTokens: opts.maxSequenceLength ?? this.defaults.max_sequence_length,
      residency,
      precision,
      backend,
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 1: text

  /** T5 + CLIP embeddings of one prompt (batch 1, host arrays), from the cache when seen before. */
  async encodePrompt(
    prompt: string,
    maxSequenceLength = this.defaults.max_sequence_length,
    opts: { onProgress?: ProgressCallback; signal?: AbortSignal } = {},
  ): Promise<PromptEmbeddings> {
    await ensureBackend();
    const key = { prompt, variant: `${this.location.name} ${this.precision}`, t5MaxLength: maxSequenceLength, clipMaxLength: 77 };
    const hit = this.promptCache.get(key);
    if (hit) return hit;
    const enc = this.textEncoders ?? (await openTextEncoders(this.location, this.options.textEncoders, this.precision));
    const report = stageReporter(opts.onProgress, 'text', 'clip', 'block');
    try {
      const emb = await enc.encode(prompt, {
        t5MaxLength: maxSequenceLength,
        onBlock: (done, total, encoder) => {
          report(done, total, { part: encoder });
          abortIfAsked(opts.signal);
        },
      });
      this.promptCache.set(key, emb);
      return emb;
    } finally {
      if (this.options.keepLoaded) this.textEncoders = enc;
      else await enc.close();
    }
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 2: transformer

  private async withTransformer<T>(fn: (t: OpenTransformer) => Promise<T>, onProgress?: ProgressCallback): Promise<T> {
    const load = stageReporter(onProgress, 'load', 'transformer', 'tensor');
    const t = this.transformer ?? (await openTransformer(this.location, this.options.transformer, onProgress && load, this.precision));
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
    onStep?: StepCallback;
    onProgress?: ProgressCallback;
    signal?: AbortSignal;
  }): Promise<tf.Tensor> {
    await ensureBackend();
    const { embeddings: e, latents, width, height, signal } = opts;
    const b = latents.shape[0]!;
    const [, l, d] = e.promptEmbedsShape;
    const steps = opts.sigmas.length - 1;
    return this.withTransformer(async (t) => {
      const txt = tf.tidy(() => tf.tile(tf.tensor3d(e.promptEmbeds, [1, l, d]), [b, 1, 1])); // [1,L,D] -> [B,L,D]
      const y = tf.tidy(() => tf.tile(tf.tensor2d(e.pooled, e.pooledShape), [b, 1])); // [1,768] -> [B,768]
      const imgIds = imageIds(width, height);
      const txtIds = textIds(l);
      const start = now();
      let last = start;
      const report = stageReporter(opts.onProgress, 'denoise', 'transformer', 'block');
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
          signal,
          onBlock: (step, block, blocks) => {
            report((step - 1) * blocks + block, steps * blocks, { step, steps });
            if (signal?.aborted) throw new AbortError(step - 1, steps, signal.reason);
          },
          onStep: opts.onStep
            ? async (s) => {
                const tNow = now();
                const info: StepInfo = {
                  step: s.step,
                  total: s.total,
                  stepMs: tNow - last,
                  elapsedMs: tNow - start,
                  latents: s.latents,
                  sigma: s.sigma,
                  velocity: s.velocity,
                  denoised: () => denoisedEstimate(s),
                };
                const r = await opts.onStep!(info);
                last = now();
                return r;
              }
            : undefined,
        });
      } finally {
        tf.dispose([txt, y, imgIds, txtIds]);
      }
    }, opts.onProgress);
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Stage 3: autoencoder

  private async openVae(onProgress?: ProgressCallback): Promise<AutoEncoder> {
    const load = stageReporter(onProgress, 'load', 'vae', 'tensor');
    return openAutoEncoder(this.location, onProgress && load, this.precision);
  }

  /** The kept VAE, else a new one freed after `fn` (kept instead with keepLoaded). */
  private async withVae<T>(fn: (vae: AutoEncoder) => Promise<T> | T, onProgress?: ProgressCallback): Promise<T> {
    if (this.vae) return fn(this.vae);
    const vae = await this.openVae(onProgress);
    try {
      return await fn(vae);
    } finally {
      if (this.options.keepLoaded) this.vae = vae;
      else vae.dispose();
    }
  }

  /** Decodes packed latents image by image (tiled as `vaeTiling` says), reporting levels or tiles. */
  private decodeWith(vae: AutoEncoder, latents: tf.Tensor, width: number, height: number, report: (done: number, total: number) => void, signal?: AbortSignal): RgbImage[] {
    const out: RgbImage[] = [];
    const z = unpackLatents(latents, width, height); // [B, L, 64] -> [B, 16, H/8, W/8]
    try {
      const b = z.shape[0];
      for (let i = 0; i < b; i++) {
        const zi = tf.slice(z, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
        let img: tf.Tensor4D | undefined;
        try {
          img = vae.decode(zi, {
            tiling: this.options.vaeTiling,
            onProgress: (d, n) => {
              report(i * n + d, b * n);
              abortIfAsked(signal);
            },
          });
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
  }

  /** Packed latents [B, L, 64] -> one RGB image per batch entry (diffusers' "pil" rounding). */
  async decodeLatents(latents: tf.Tensor, width: number, height: number, opts: { onProgress?: ProgressCallback; signal?: AbortSignal } = {}): Promise<RgbImage[]> {
    await ensureBackend();
    return this.withVae((vae) => this.decodeWith(vae, latents, width, height, stageReporter(opts.onProgress, 'decode', 'vae', 'level'), opts.signal), opts.onProgress);
  }

  /**
   * An RGB image (already width x height) -> scaled VAE latent [1, 16, H/8, W/8], sampled with `noise`
   * (latent_dist.sample) or the mean when no noise is given.
   */
  async encodeImage(image: RgbImage, noise?: Float32Array, opts: { onProgress?: ProgressCallback; signal?: AbortSignal } = {}): Promise<tf.Tensor4D> {
    await ensureBackend();
    return this.withVae((vae) => {
      const x = rgbBytesToImage(image.data, image.width, image.height);
      const report = stageReporter(opts.onProgress, 'image-encode', 'vae', 'level');
      const onProgress = (d: number, n: number) => {
        report(d, n);
        abortIfAsked(opts.signal);
      };
      try {
        return vae.encode(x, noise ? { mode: 'sample', noise, onProgress } : { mode: 'mean', onProgress });
      } finally {
        x.dispose();
      }
    }, opts.onProgress);
  }

  /**
   * The proj preview's latent -> RGB map: the one given in the options, else fitted once to this model's VAE
   * (latent-rgb.ts; `latentRgbFit` then holds the fit's quality).
   */
  async latentRgbProjection(opts: { onProgress?: ProgressCallback } = {}): Promise<LatentRgbProjection> {
    if (this.latentRgb) return this.latentRgb;
    await ensureBackend();
    const report = stageReporter(opts.onProgress, 'preview', 'latent-rgb', 'image');
    const fit = await this.withVae((vae) => fitLatentRgb(vae, { onProgress: report }), opts.onProgress);
    this.latentRgbFit = fit;
    this.latentRgb = fit.projection;
    return fit.projection;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Everything

  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const t0 = now();
    const d = this.defaults;
    if (typeof opts !== 'object' || opts === null) throw new GenerateError('generate takes an options object: { prompt, width, height, ... }');
    checkKnownKeys(opts, GENERATE_KEYS, 'generate', 'INVALID_GENERATE_OPTIONS');
    if (opts.preview !== undefined) checkKnownKeys(opts.preview, PREVIEW_KEYS, 'preview', 'INVALID_GENERATE_OPTIONS');
    if (typeof opts.prompt !== 'string') throw new GenerateError('prompt must be a string');
    const width = opts.width ?? 512;
    const height = opts.height ?? 512;
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      const problem = imageSideProblem(v, LIBRARY_MIN_SIDE);
      if (problem) throw new GenerateError(`${name} ${problem}`);
    }
    const steps = opts.steps ?? d.num_inference_steps;
    checkInt('steps', steps, 1, 1000);
    const numImages = opts.numImages ?? 1;
    checkInt('numImages', numImages, 1, 64);
    const batchIndex = opts.batchIndex;
    if (batchIndex !== undefined) checkInt('batchIndex', batchIndex, 0, numImages - 1);
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
    const preview = opts.preview;
    const previewMode: PreviewMode = preview?.mode ?? 'proj';
    const previewEvery = preview?.every ?? 1;
    if (preview) {
      if (typeof preview.onPreview !== 'function') throw new GenerateError('preview.onPreview must be a function (it receives each StepPreview)');
      if (previewMode !== 'proj' && previewMode !== 'vae') throw new GenerateError(`preview.mode must be 'proj' or 'vae', got ${String(previewMode)}`);
      checkInt('preview.every', previewEvery, 1);
    }
    const shape = latentShape(width, height, numImages); // [B, 16, H/8, W/8]: the whole batch's draw
    const n = shape.reduce((a, b) => a * b, 1);
    const runBatch = batchIndex === undefined ? numImages : 1;
    const runShape = latentShape(width, height, runBatch);
    const slice = (all: Float32Array) => (batchIndex === undefined ? all : all.subarray(batchIndex * (n / numImages), (batchIndex + 1) * (n / numImages)));
    let givenNoise: Float32Array | undefined;
    let latentsSha256: string | undefined;
    if (opts.latents !== undefined) {
      const data = opts.latents instanceof Float32Array ? opts.latents : opts.latents.data;
      const given = opts.latents instanceof Float32Array ? undefined : opts.latents.shape;
      const ok = data.length === n && (given === undefined || given.reduce((a, b) => a * b, 1) === n && given[given.length - 1] === shape[3] && given[given.length - 2] === shape[2]);
      if (!ok) {
        throw new GenerateError(`latents ${given ? `[${given.join(', ')}]` : `of ${data.length} values`} do not fit a ${numImages}x ${width}x${height} generation: expected [${shape.join(', ')}] (${n} values); make them with flux-ts noise --shape ${shape.join(',')}`);
      }
      givenNoise = data;
      latentsSha256 = createHash('sha256').update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).digest('hex');
    }
    let input: RgbImage | undefined;
    if (opts.image !== undefined) {
      const img = opts.image instanceof Uint8Array ? decodeImage(opts.image, opts.imageName ?? 'image') : opts.image;
      input = img.width === width && img.height === height ? img : resizeLanczos(img, width, height);
    }
    const memory = await this.memoryEstimate({ width, height, numImages: runBatch, maxSequenceLength: maxSeq });
    if (!memory.fits) throw new GenerateError(`${memory.summary}: choose a smaller size${currentBackend()?.name === 'wasm' ? ' or the native backend (flux-ts setup-native)' : ''}`, 'TOO_LARGE');

    const signal = opts.signal;
    const onProgress = opts.onProgress;
    const timings: StageTimings = { loadMs: 0, textMs: 0, imageEncodeMs: 0, denoiseMs: 0, decodeMs: 0, previewMs: 0, totalMs: 0, stepMs: [] };
    let stepsDone = 0;
    const plannedSteps = { n: steps };
    const checkAbort = () => {
      if (signal?.aborted) throw new AbortError(stepsDone, plannedSteps.n, signal.reason);
    };
    // Loading measured apart from the stage that needs it: the 'load' events' start and end.
    let loadStart: number | undefined;
    const progress: ProgressCallback = (e) => {
      if (e.stage === 'load' || (e.stage === 'preview' && e.part === 'latent-rgb')) {
        loadStart ??= now() - e.elapsedMs;
        if (e.done === e.total) {
          timings.loadMs += now() - loadStart;
          loadStart = undefined;
        }
      }
      onProgress?.(e);
      checkAbort();
    };
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
    const text = await stage('text', () => this.encodePrompt(opts.prompt, maxSeq, { onProgress: progress, signal }));
    timings.textMs = text.ms;

    // 2. start latents: the generator draws the VAE sample first (img2img), then the noise (diffusers order).
    const sigmas = getSchedule(steps, imageSeqLen(width, height), this.scheduler);
    const gen = new TorchGenerator(seedBig);
    const plan = strength !== undefined ? img2imgPlan(sigmas, strength) : undefined;
    plannedSteps.n = plan ? plan.steps : steps;
    const seedUsed = givenNoise === undefined || (input !== undefined && plan !== undefined && plan.usesImage);
    let start: tf.Tensor | undefined;
    let runSigmas: readonly number[] = sigmas;
    // A 'vae' preview decodes during the denoising: hold the VAE from before it until the final decode.
    const pinVae = preview !== undefined && previewMode === 'vae' && this.vae === null;
    try {
      if (input && plan) {
        const vaeNoise = gen.randn(latentShape(width, height, 1));
        const noise = slice(givenNoise ?? gen.randn(shape));
        runSigmas = plan.sigmas;
        if (plan.usesImage) {
          const enc = await stage('image-encode', () => this.encodeImage(input!, vaeNoise, { onProgress: progress, signal }));
          timings.imageEncodeMs = enc.ms;
          const x0 = enc.value;
          start = tf.tidy(() => {
            const x0b = runBatch > 1 ? tf.tile(x0, [runBatch, 1, 1, 1]) : x0; // [1,16,h,w] -> [B,16,h,w]
            const noised = plan.steps > 0 ? noiseLatents(x0b, tf.tensor(noise, runShape, 'float32'), plan.sigmaStart) : x0b.clone();
            return packLatents(noised);
          });
          x0.dispose();
        } else {
          start = tf.tidy(() => packLatents(tf.tensor(noise, runShape, 'float32')));
        }
      } else {
        const noise = slice(givenNoise ?? gen.randn(shape));
        start = tf.tidy(() => packLatents(tf.tensor(noise, runShape, 'float32'))); // [B,16,h,w] -> [B,L,64]
      }

      // previews: the map or the VAE, ready before the transformer loads
      let projection: LatentRgbProjection | undefined;
      if (preview && runSigmas.length > 1) {
        if (previewMode === 'proj') projection = await this.latentRgbProjection({ onProgress: progress });
        else if (pinVae) this.vae = await this.openVae(progress);
      }
      const makePreview = async (step: number, total: number, x0: tf.Tensor): Promise<void> => {
        const t = now();
        let rgb: RgbImage[];
        if (projection) {
          const z = unpackLatents(x0, width, height); // [B, L, 64] -> [B, 16, H/8, W/8]
          try {
            rgb = projectLatents(z, projection);
          } finally {
            z.dispose();
          }
        } else {
          const report = stageReporter(progress, 'preview', 'vae', 'level');
          rgb = this.decodeWith(this.vae!, x0, width, height, (dn, tn) => report(dn, tn, { step, steps: total }), signal);
        }
        const images = rgb.map((im, i): PreviewImage => ({ index: batchIndex ?? i, width: im.width, height: im.height, rgb: im.data, png: encodePng(im) }));
        timings.previewMs += now() - t;
        await preview!.onPreview({ step, total, mode: previewMode, images });
      };

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
            onProgress: progress,
            onStep: async (info) => {
              timings.stepMs.push(info.stepMs);
              stepsDone = info.step;
              const replaced = await opts.onStep?.(info);
              if (preview && info.step % previewEvery === 0) {
                const x = replaced instanceof tf.Tensor ? replaced : info.latents;
                const x0 = denoisedEstimate({ latents: x, velocity: info.velocity, sigma: info.sigma }); // = x after the last step
                try {
                  await makePreview(info.step, info.total, x0);
                } finally {
                  x0.dispose();
                }
              }
              return replaced;
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
        const dec = await stage('decode', () => this.decodeLatents(final, width, height, { onProgress: progress, signal }));
        timings.decodeMs = dec.ms;
        rgb = dec.value;
      } finally {
        final.dispose();
      }

      timings.totalMs = now() - t0;
      const images = rgb.map((im, i): GeneratedImage => {
        const index = batchIndex ?? i;
        const metadata: GenerationMetadata = {
          prompt: opts.prompt,
          ...(seedUsed ? { seed } : {}),
          steps,
          guidance,
          width,
          height,
          model: opts.modelName ?? this.location.name,
          variant: this.variant,
          max_sequence_length: maxSeq,
          precision: this.precision,
          num_images: numImages,
          index,
          ...(strength !== undefined ? { strength } : {}),
          ...(opts.imageName ? { image: opts.imageName } : {}),
          ...(givenNoise ? { latents: opts.latentsName ?? 'latents', latents_sha256: latentsSha256 } : {}),
          version: FLUX_TS_VERSION,
        };
        return { index, width: im.width, height: im.height, rgb: im.data, png: encodePng(im, pngTextFor(metadata)), metadata };
      });
      return {
        images,
        seed,
        seedUsed,
        width,
        height,
        steps,
        stepsRun: runSigmas.length - 1,
        guidance,
        ...(strength !== undefined ? { strength } : {}),
        maxSequenceLength: maxSeq,
        variant: this.variant,
        precision: this.precision,
        model: this.location.name,
        timings,
      };
    } finally {
      start?.dispose();
      if (pinVae && !this.options.keepLoaded) {
        this.vae?.dispose();
        this.vae = null;
      }
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

/** Throws the one abort error when `signal` fired (checked between blocks, levels and tiles). */
function abortIfAsked(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(0, 0, signal.reason);
}
