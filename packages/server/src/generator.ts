/**
 * What the server runs a job with: an injectable `Generator` (one per loaded model), so tests can use the real
 * tiny pipeline or a slow fake. `PipelineGenerator` is the real one over `FluxPipeline` (stages kept loaded).
 */
import type { InferenceRequest } from '@flux-ts/core';
import { FluxPipeline, type PipelineOptions, type RgbImage } from '@flux-ts/flux';
import { loadTokenizers } from '@flux-ts/flux';

export interface GenerationInput {
  /** The validated request (defaults filled, seed set). `image` is ignored: see `image` below. */
  request: InferenceRequest;
  /** Decoded image-to-image input, when the request had one. */
  image?: RgbImage;
}

export interface GenerationProgress {
  step: number;
  total: number;
}

export interface GenerationOutput {
  /** PNG file bytes, one per image. */
  pngs: Uint8Array[];
  seed: number | string;
  /** Prompt tokens the text encoder saw (T5, specials included, no padding). */
  tokensInput: number;
}

export interface Generator {
  /** 'schnell' or 'dev': which API model path serves it (FLUX-1-schnell / FLUX-1-dev). */
  readonly variant: 'schnell' | 'dev';
  generate(input: GenerationInput, opts: { signal: AbortSignal; onStep: (p: GenerationProgress) => void }): Promise<GenerationOutput>;
  /** Frees the model. */
  close?(): Promise<void>;
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

  async generate(input: GenerationInput, opts: { signal: AbortSignal; onStep: (p: GenerationProgress) => void }): Promise<GenerationOutput> {
    const r = input.request;
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
      signal: opts.signal,
      onStep: (s) => opts.onStep({ step: s.step, total: s.total }),
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
}
