/**
 * The streamed walk over a FULL-SIZE FLUX.1 [schnell] checkpoint written header-only (writeSparseSafetensors: the
 * real BFL keys and shapes, BF16, ~23.8 GB apparent, a few KB on disk): every key is validated before any data is
 * read, and ONE block is read, converted and released. (Running a whole step over it is the opt-in script
 * packages/flux/scripts/run-sparse-transformer.ts: it takes minutes.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { denoise } from '@flux-ts/core';
import { FLUX_SCHNELL } from '../../src/transformer/config.ts';
import { loadTransformer } from '../../src/transformer/load.ts';
import { SingleStreamBlock } from '../../src/transformer/single-stream-block.ts';
import { isPreTransposed } from '../../src/nn/linear.ts';
import { TransformerWeightsError } from '../../src/transformer/keys.ts';
import { openTransformerWeights } from '../../src/transformer/load.ts';
import { bflTransformerArchitecture } from '../../src/weights/architectures.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { writeSparseSafetensors } from '../../src/weights/safetensors.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-sparse-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const entries = (prefix = '') =>
  [...bflTransformerArchitecture(FLUX_SCHNELL).tensors].map(([name, shape]) => ({ name: prefix + name, dtype: 'BF16' as const, shape }));

describe('full-size sparse schnell checkpoint, streamed', () => {
  it('validates every key and reads one single block', async () => {
    const path = join(dir, 'flux1-schnell.safetensors');
    const bytes = await writeSparseSafetensors(path, entries('model.diffusion_model.'));
    expect(bytes).toBeGreaterThan(23.7e9);
    const ckpt = await openCheckpoint(path);
    const src = openTransformerWeights(ckpt, FLUX_SCHNELL, { residency: 'streamed' });
    expect(src.layout.format).toBe('bfl-transformer');
    expect(src.prefix).toBe('model.diffusion_model.');

    const before = tf.memory().numTensors;
    const w = await src.get('single_blocks.37.');
    const dims = { hidden_size: 3072, num_heads: 24, mlp_ratio: 4 };
    expect(Object.keys(w).sort()).toEqual(Object.keys(SingleStreamBlock.spec(dims)).sort());
    expect(w['linear1.weight']!.shape).toEqual([3072, 21504]); // [out, in] transposed once for the matmul
    expect(isPreTransposed(w['linear1.weight']!)).toBe(true);
    expect(w['linear2.weight']!.shape).toEqual([15360, 3072]);
    const block = new SingleStreamBlock(dims, w);
    expect(block.linear1.outFeatures).toBe(21504);
    const m = tf.tidy(() => tf.max(tf.abs(w['linear1.bias']!)));
    expect((await m.data())[0]).toBe(0); // sparse data reads as zeros
    m.dispose();
    src.release('single_blocks.37.', w);
    expect(tf.memory().numTensors).toBe(before);
    await ckpt.close();
  }, 120_000);

  // The step prepares all 12B weights (bf16 -> f32, transposes): about a minute, so it runs on one backend only
  // (the host-side preparation is the same on every backend; the block counts do not depend on it).
  it.runIf(tf.getBackend() === 'wasm')('one streamed step reports 19 + 38 = 57 blocks, in order', async () => {
    const path = join(dir, 'flux1-schnell.safetensors');
    await writeSparseSafetensors(path, entries('model.diffusion_model.'));
    const ckpt = await openCheckpoint(path);
    const model = await loadTransformer(ckpt, FLUX_SCHNELL, { residency: 'streamed', prefetch: false });
    const before = tf.memory().numTensors;
    const blocks: string[] = [];
    const inputs = {
      img: tf.zeros([1, 1, 64]), // 16x16 pixels: one packed token
      img_ids: tf.zeros([1, 3]),
      txt: tf.zeros([1, 1, 4096]),
      txt_ids: tf.zeros([1, 3]),
      y: tf.zeros([1, 768]),
    };
    const out = await denoise({ model, ...inputs, sigmas: [1, 0], onBlock: (step, block, n) => blocks.push(`${step}:${block}/${n}`) });
    expect(blocks).toEqual(Array.from({ length: 57 }, (_, i) => `1:${i + 1}/57`));
    expect(out.shape).toEqual([1, 1, 64]);
    tf.dispose([out, ...Object.values(inputs)]);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    await ckpt.close();
  }, 600_000);

  it('names a missing block tensor before reading any data', async () => {
    const path = join(dir, 'missing.safetensors');
    await writeSparseSafetensors(path, entries().filter((e) => e.name !== 'double_blocks.18.txt_mlp.2.weight'));
    const ckpt = await openCheckpoint(path);
    expect(() => openTransformerWeights(ckpt, FLUX_SCHNELL)).toThrow(TransformerWeightsError);
    expect(() => openTransformerWeights(ckpt, FLUX_SCHNELL)).toThrow(/missing 1 key\(s\): double_blocks\.18\.txt_mlp\.2\.weight/);
    await ckpt.close();
  });
});
