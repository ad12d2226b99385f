/**
 * The prompt-embedding cache: an LRU over what the transformer needs from the text encoders, kept on the host
 * (Float32Arrays, never tensors), keyed by prompt, variant and both lengths.
 */
import { FluxError } from '@flux-ts/core';

/** What the transformer needs from the text encoders, on the host. */
export interface PromptEmbeddings {
  /** T5 last_hidden_state [1, L, 4096] ("prompt_embeds"). */
  promptEmbeds: Float32Array;
  promptEmbedsShape: [number, number, number];
  /** CLIP pooler_output [1, 768] ("pooled_prompt_embeds"). */
  pooled: Float32Array;
  pooledShape: [number, number];
}

export interface PromptKey {
  prompt: string;
  variant: string;
  t5MaxLength: number;
  clipMaxLength: number;
}

/** LRU over prompt embeddings (host Float32Arrays, never tensors), keyed by prompt, variant and lengths. */
export class PromptEmbeddingCache {
  private readonly map = new Map<string, PromptEmbeddings>();
  hits = 0;
  misses = 0;
  evictions = 0;

  readonly capacity: number;
  constructor(capacity = 8) {
    this.capacity = capacity;
    if (!Number.isInteger(capacity) || capacity < 0) throw new FluxError('INVALID_OPTION', `prompt cache capacity must be an integer >= 0, got ${capacity}`);
  }

  static key(k: PromptKey): string {
    return JSON.stringify([k.variant, k.t5MaxLength, k.clipMaxLength, k.prompt]);
  }

  get size(): number {
    return this.map.size;
  }

  get(k: PromptKey): PromptEmbeddings | undefined {
    const key = PromptEmbeddingCache.key(k);
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key); // most recently used goes last
    this.map.set(key, v);
    return v;
  }

  set(k: PromptKey, v: PromptEmbeddings): void {
    if (this.capacity === 0) return;
    const key = PromptEmbeddingCache.key(k);
    this.map.delete(key);
    this.map.set(key, v);
    while (this.map.size > this.capacity) {
      this.map.delete(this.map.keys().next().value as string);
      this.evictions++;
    }
  }

  clear(): void {
    this.map.clear();
  }
}
