/**
 * What the server runs a job with: an injectable `Generator` (one per loaded model), so tests can use the real
 * tiny pipeline or a slow fake. `PipelineGenerator` is the real one over `FluxPipeline` (stages kept loaded); the
 * server and workers run it on a thread of its own (`ThreadedGenerator`), never on the HTTP thread.
 */
import type { InferenceRequest } from '@flux-ts/core';
import { FluxPipeline, initBackend, type PipelineOptions, type StepPreview } from '@flux-ts/flux';
import { loadTokenizers } from '@flux-ts/flux';
import { MODEL_IDS } from './model-ids.ts';

export interface GenerationInput {
  /** The validated request (defaults filled, seed set). `image` is ignored: see `image` below. */
  request: InferenceRequest;
  /** Image-to-image input: PNG/JPEG file bytes (header already checked); decoded when the job runs. */
  image?: Uint8Array;
}

export interface GenerationProgress {
  step: number;
  total: number;
}

/** A step preview (requests with `preview_every`): a PNG of the proj estimate of the first image, 1/8 of its size. */
export interface GenerationPreview {
  step: number;
  total: number;
  png: Uint8Array;
}

/** What a job runner hands a generator: the abort signal, and where steps and previews go. */
export interface GenerateCallbacks {
  signal: AbortSignal;
  onStep: (p: GenerationProgress) => void;
  onPreview?: (p: GenerationPreview) => void;
}

export interface GenerationOutput {
  /** PNG file bytes, one per image. */
  pngs: Uint8Array[];
  seed: number | string;
  /** Prompt tokens the text encoder saw (T5, specials included, no padding). */
  tokensInput: number;
}

/** Tensors alive in the generator's tensor engine (between jobs this must not grow). */
export interface GeneratorMemory {
  numTensors: number;
}

export interface Generator {
  /** 'schnell' or 'dev': which API model path serves it (FLUX-1-schnell / FLUX-1-dev). */
  readonly variant: 'schnell' | 'dev';
  generate(input: GenerationInput, opts: GenerateCallbacks): Promise<GenerationOutput>;
  /** Frees the model. `force`: stop now, even in the middle of a job (the shutdown deadline). */
  close?(opts?: { force?: boolean }): Promise<void>;
  /** Live tensor count, when the generator has a tensor engine. */
  memory?(): Promise<GeneratorMemory | null>;
}

/** The real generator: a FluxPipeline with every stage kept loaded between jobs. */
export class PipelineGenerator implements Generator {
  readonly pipeline: FluxPipeline;
  private tokenCounter: Promise<(prompt: string) => number> | undefined;

  constructor(pipeline: FluxPipeline) {
    this.pipeline = pipeline;
  }

  /** Locates and verifies the model (headers only; weights load on the first job). */
  static async open(model: string, options: PipelineOptions = {}): Promise<PipelineGenerator> {
    const p = FluxPipeline.load(model, { keepLoaded: true, ...options });
    await p.verify();
    return new PipelineGenerator(p);
  }

  get variant(): 'schnell' | 'dev' {
    return this.pipeline.variant;
  }

  private countTokens(prompt: string): Promise<number> {
    this.tokenCounter ??= loadTokenizers(this.pipeline.location.textEncoderRoot, {
      t5Length: this.pipeline.defaults.max_sequence_length,
    }).then((t) => (p: string) => t.t5.tokenize(p).length);
    return this.tokenCounter.then((count) => count(prompt));
  }

  async generate(input: GenerationInput, opts: GenerateCallbacks): Promise<GenerationOutput> {
    const r = input.request;
    const onPreview = opts.onPreview;
    const img2img = input.image !== undefined;
    const result = await this.pipeline.generate({
      prompt: r.prompt,
      width: r.width,
      height: r.height,
      steps: r.num_inference_steps,
      seed: r.seed,
      guidance: r.guidance_scale,
      numImages: r.num_images,
      ...(img2img ? { image: input.image, strength: r.strength } : {}),
      modelName: MODEL_IDS[this.variant], // the API's model id, never the server's local path
      signal: opts.signal,
      onStep: (s) => opts.onStep({ step: s.step, total: s.total }),
      ...(r.preview_every !== undefined && onPreview
        ? { preview: { mode: 'proj' as const, every: r.preview_every, onPreview: (p: StepPreview) => onPreview({ step: p.step, total: p.total, png: p.images[0]!.png }) } }
        : {}),
    });
    let tokensInput = 0;
    try {
      tokensInput = await this.countTokens(r.prompt);
    } catch {
      tokensInput = 0; // a model folder without tokenizers (never for a model that just generated)
    }
    return { pngs: result.images.map((i) => i.png), seed: result.seed, tokensInput };
  }

  async close(): Promise<void> {
    await this.pipeline.dispose();
  }

  async memory(): Promise<GeneratorMemory> {
    const tf = await import('@tensorflow/tfjs-core');
    return { numTensors: tf.memory().numTensors };
  }
}

/**
 * The generation thread's factory (threaded-generator.ts): picks the tensor backend in that thread, then opens and
 * verifies the pipeline there.
 */
export async function createGenerator(args: { model: string; options?: PipelineOptions; backend?: string }): Promise<Generator> {
  await initBackend({ backend: args.backend, quiet: true });
  return PipelineGenerator.open(args.model, args.options ?? {});
}
