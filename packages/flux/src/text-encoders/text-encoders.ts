/**
 * FLUX's two text encoders as one stage: the tokenizers, CLIP (`text_encoder/`) and T5 (`text_encoder_2/`), and the
 * prompt cache. `encode(prompt)` gives what the transformer needs, on the host.
 */
import { join } from 'node:path';
import type { CLIPTextModel } from '../clip/clip-text-model.ts';
import type { T5EncoderModel } from '../t5/t5-encoder-model.ts';
import type { WeightsLocation } from '../weights/detect.ts';
import type { Residency } from '../runtime/backend.ts';
import type { Precision } from '../runtime/bf16.ts';
import { loadClipTextModel, loadT5EncoderModel } from './load.ts';
import { PromptEmbeddingCache, type PromptEmbeddings, type PromptKey } from './prompt-cache.ts';

/** Token ids for each encoder, padded / truncated to `maxLength` as FLUX's pipeline asks its tokenizers. */
export interface PromptTokenizers {
  clip(prompt: string, maxLength: number): number[] | Promise<number[]>;
  t5(prompt: string, maxLength: number): number[] | Promise<number[]>;
}

export interface EncodeOptions {
  /** schnell 256, dev 512 (diffusers FluxPipeline max_sequence_length). */
  t5MaxLength?: number;
  clipMaxLength?: number;
  variant?: string;
  /**
   * Progress: after each CLIP layer, then each T5 block; `done` counts over both encoders to `total` (FLUX.1: 12 + 24).
   * May be async (awaited before the next block).
   */
  onBlock?: (done: number, total: number, encoder: 'clip' | 't5') => void | Promise<void>;
}

/** Both encoders plus tokenizers and the cache: `encode(prompt)` -> PromptEmbeddings on the host. */
export class TextEncoders {
  readonly clip: CLIPTextModel;
  readonly t5: T5EncoderModel;
  readonly tokenizers: PromptTokenizers;
  readonly cache: PromptEmbeddingCache;
  private readonly closers: (() => Promise<void>)[];
  constructor(
    clip: CLIPTextModel,
    t5: T5EncoderModel,
    tokenizers: PromptTokenizers,
    cache: PromptEmbeddingCache = new PromptEmbeddingCache(),
    closers: (() => Promise<void>)[] = [],
  ) {
    this.clip = clip;
    this.t5 = t5;
    this.tokenizers = tokenizers;
    this.cache = cache;
    this.closers = closers;
  }

  /**
   * The encoders of a diffusers FLUX.1 folder (`root/text_encoder/`, `root/text_encoder_2/`), or at the locations
   * model discovery found (pipeline/model-location.ts).
   */
  static async open(
    at: string | { clip: WeightsLocation; t5: WeightsLocation },
    tokenizers: PromptTokenizers,
    opts: { residency?: Residency; precision?: Precision; cacheCapacity?: number } = {},
  ): Promise<TextEncoders> {
    const where = typeof at === 'string' ? { clip: join(at, 'text_encoder'), t5: join(at, 'text_encoder_2') } : at;
    const clip = await loadClipTextModel(where.clip, opts);
    try {
      const t5 = await loadT5EncoderModel(where.t5, opts);
      return new TextEncoders(clip.model, t5.model, tokenizers, new PromptEmbeddingCache(opts.cacheCapacity ?? 8), [clip.close, t5.close]);
    } catch (e) {
      await clip.close();
      throw e;
    }
  }

  async encode(prompt: string, opts: EncodeOptions = {}): Promise<PromptEmbeddings> {
    const key: PromptKey = {
      prompt,
      variant: opts.variant ?? 'schnell',
      t5MaxLength: opts.t5MaxLength ?? 256,
      clipMaxLength: opts.clipMaxLength ?? this.clip.config.maxPositionEmbeddings,
    };
    const hit = this.cache.get(key);
    if (hit) return hit;
    const clipIds = await this.tokenizers.clip(prompt, key.clipMaxLength);
    const t5Ids = await this.tokenizers.t5(prompt, key.t5MaxLength);
    const nClip = this.clip.config.numHiddenLayers;
    const total = nClip + this.t5.config.numLayers;
    const onBlock = opts.onBlock;
    const { lastHiddenState, pooledOutput } = await this.clip.forward([clipIds], onBlock ? { onLayer: (i) => onBlock(i + 1, total, 'clip') } : {});
    lastHiddenState.dispose();
    const pooled = (await pooledOutput.data()) as Float32Array;
    pooledOutput.dispose();
    const t5Out = await this.t5.forward([t5Ids], onBlock ? { onBlock: (i) => onBlock(nClip + i + 1, total, 't5') } : {});
    const promptEmbeds = (await t5Out.data()) as Float32Array;
    const shape = t5Out.shape as [number, number, number];
    t5Out.dispose();
    const v: PromptEmbeddings = { promptEmbeds, promptEmbedsShape: shape, pooled, pooledShape: [1, pooled.length] };
    this.cache.set(key, v);
    return v;
  }

  async close(): Promise<void> {
    for (const c of this.closers) await c();
  }
}
