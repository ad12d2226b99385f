/** The prompt-embedding cache (src/text-encoders/prompt-cache.ts): LRU by prompt, variant and lengths; host arrays. */
import { describe, expect, it } from 'vitest';
import { PromptEmbeddingCache, type PromptEmbeddings, type PromptKey } from '../../src/text-encoders/prompt-cache.ts';

function entry(v: number): PromptEmbeddings {
  return { promptEmbeds: new Float32Array([v]), promptEmbedsShape: [1, 1, 1], pooled: new Float32Array([v]), pooledShape: [1, 1] };
}
const key = (prompt: string, over: Partial<PromptKey> = {}): PromptKey => ({ prompt, variant: 'schnell', t5MaxLength: 256, clipMaxLength: 77, ...over });

describe('PromptEmbeddingCache', () => {
  it('counts hits and misses; the key includes variant and both lengths', () => {
    const c = new PromptEmbeddingCache(4);
    expect(c.get(key('a'))).toBeUndefined();
    c.set(key('a'), entry(1));
    expect(c.get(key('a'))?.pooled[0]).toBe(1);
    expect(c.get(key('a', { variant: 'dev' }))).toBeUndefined();
    expect(c.get(key('a', { t5MaxLength: 512 }))).toBeUndefined();
    expect(c.get(key('a', { clipMaxLength: 76 }))).toBeUndefined();
    expect(c.get(key('A'))).toBeUndefined();
    expect([c.hits, c.misses]).toEqual([1, 5]);
  });

  it('evicts the least recently used entry beyond capacity', () => {
    const c = new PromptEmbeddingCache(2);
    c.set(key('a'), entry(1));
    c.set(key('b'), entry(2));
    c.get(key('a')); // a is now the most recent
    c.set(key('c'), entry(3)); // evicts b
    expect(c.size).toBe(2);
    expect(c.evictions).toBe(1);
    expect(c.get(key('b'))).toBeUndefined();
    expect(c.get(key('a'))?.pooled[0]).toBe(1);
    expect(c.get(key('c'))?.pooled[0]).toBe(3);
    c.set(key('c'), entry(4)); // overwrite, no eviction
    expect([c.size, c.evictions, c.get(key('c'))?.pooled[0]]).toEqual([2, 1, 4]);
  });

  it('capacity 0 disables caching; bad capacities are typed errors', () => {
    const c = new PromptEmbeddingCache(0);
    c.set(key('a'), entry(1));
    expect(c.get(key('a'))).toBeUndefined();
    expect(() => new PromptEmbeddingCache(-1)).toThrow(/capacity/);
    expect(() => new PromptEmbeddingCache(1.5)).toThrow(/capacity/);
  });
});
