/**
 * TextEncoders over a diffusers-like folder (text_encoder/ + text_encoder_2/): outputs equal the reference, a repeated
 * prompt skips both encoders (the cache itself: prompt-cache.test.ts).
 */
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { TextEncoders } from '../../src/text-encoders/text-encoders.ts';


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
