/**
 * The prompt-embedding cache (LRU by prompt, variant and lengths; host arrays) and TextEncoders over a diffusers-like
 * folder (text_encoder/ + text_encoder_2/): outputs equal the reference, a repeated prompt skips both encoders.
 */
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { PromptEmbeddingCache, type PromptEmbeddings, type PromptKey } from '../../src/text-encoders/prompt-cache.ts';
import { TextEncoders } from '../../src/text-encoders/text-encoders.ts';

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

describe('TextEncoders over a diffusers-like folder', () => {
  it('encodes a prompt as the references, and a repeated prompt skips tokenizers and both encoders', async () => {
    const root = await mkdtemp(join(tmpdir(), 'flux-te-'));
    await symlink(fixturePath('text-encoders', 'clip'), join(root, 'text_encoder'));
    await symlink(fixturePath('text-encoders', 't5'), join(root, 'text_encoder_2'));
    const clipRef = await loadFixture('text-encoders', 'clip.safetensors');
    const t5Ref = await loadFixture('text-encoders', 't5.safetensors');
    const calls: string[] = [];
    const tokenizers = {
      clip: (p: string, n: number) => (calls.push(`clip:${p}:${n}`), Array.from(clipRef.input_ids.data).slice(0, 16)),
      t5: (p: string, n: number) => (calls.push(`t5:${p}:${n}`), Array.from(t5Ref.input_ids.data).slice(0, 150)),
    };
    const te = await TextEncoders.open(root, tokenizers, { cacheCapacity: 2 });
    try {
      const before = tf.memory().numTensors;
      const a = await te.encode('a cat', { t5MaxLength: 150 });
      expect(calls).toEqual(['clip:a cat:16', 't5:a cat:150']);
      expect(a.promptEmbedsShape).toEqual([1, 150, 32]);
      expect(a.pooledShape).toEqual([1, 32]);
      expect(a.promptEmbeds).toBeInstanceOf(Float32Array);
      expectClose(a.promptEmbeds, (t5Ref.last_hidden_state.data as Float32Array).slice(0, 150 * 32), { relL2: 1e-5, label: 'prompt_embeds' });
      expectClose(a.pooled, (clipRef.pooler_output.data as Float32Array).slice(0, 32), { relL2: 1e-5, label: 'pooled' });
      const again = await te.encode('a cat', { t5MaxLength: 150 });
      expect(again).toBe(a);
      expect(calls.length).toBe(2);
      expect([te.cache.hits, te.cache.misses]).toEqual([1, 1]);
      await te.encode('a cat', { t5MaxLength: 150, variant: 'dev' });
      expect(calls.length).toBe(4);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await te.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a folder without text encoders is a typed error that says what to pass', async () => {
    const root = await mkdtemp(join(tmpdir(), 'flux-te-empty-'));
    try {
      await expect(TextEncoders.open(root, { clip: () => [], t5: () => [] })).rejects.toThrow(/text_encoder\/config\.json: cannot read/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
