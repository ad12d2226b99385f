/**
 * CLIPTextModel (transformers 5.23, tiny quick_gelu config, fp32) loaded from a folder, against the reference:
 * every layer, last_hidden_state and pooler_output, relative L2 <= 1e-5. Two folders: `clip-legacy` (FLUX.1-like:
 * eos_token_id 2 -> pooled at argmax(ids), keys with `text_model.`) and `clip` (transformers 5 keys, eos 500 with a
 * larger id earlier in the row, so argmax would pick the wrong row).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { clipPoolIndices } from '../../src/clip/clip-text-model.ts';
import { loadClipTextModel } from '../../src/text-encoders/load.ts';
import { TextEncoderInputError } from '../../src/text-encoders/token-ids.ts';
import { clipTextArchitecture } from '../../src/weights/architectures.ts';

const TOL = 1e-5;

function idRows(t: { shape: number[]; data: ArrayLike<number> }): number[][] {
  const [B, L] = t.shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.data).slice(b * L, (b + 1) * L));
}

describe('clipPoolIndices', () => {
  it('legacy eos_token_id 2: argmax (first maximum); otherwise the first eos (0 when none)', () => {
    const ids = Int32Array.from([5, 9, 7, 9, 3, /* row 2 */ 5, 4, 4, 6, 4]);
    expect(clipPoolIndices(ids, 2, 5, 2)).toEqual([1, 3]);
    expect(clipPoolIndices(ids, 2, 5, 4)).toEqual([0, 1]);
    expect(clipPoolIndices(ids, 2, 5, 7)).toEqual([2, 0]);
  });
});

describe.each([
  ['clip-legacy', 'text_model.', 2],
  ['clip', '', 500],
] as const)('CLIPTextModel %s', (name, prefix, eos) => {
  for (const residency of ['streamed', 'resident'] as const) {
    it(`${residency}: every layer, last_hidden_state and pooler_output match (relL2 <= 1e-5), no tensors left behind`, async () => {
      const ref = await loadFixture('text-encoders', `${name}.safetensors`);
      const enc = await loadClipTextModel(fixturePath('text-encoders', name), { residency });
      expect(enc.weights.prefix).toBe(prefix);
      expect(enc.config.eosTokenId).toBe(eos);
      const before = tf.memory().numTensors;
      const layers: Float32Array[] = [];
      const { lastHiddenState, pooledOutput } = await enc.model.forward(idRows(ref.input_ids), {
        onLayer: async (_i, h) => void layers.push((await h.data()) as Float32Array),
      });
      expect(layers.length).toBe(3);
      layers.forEach((l, i) => expectClose(l, ref[`layer_${i}`].data as Float32Array, { relL2: TOL, label: `${name} layer ${i}` }));
      expect(lastHiddenState.shape).toEqual([2, 16, 32]);
      expect(pooledOutput.shape).toEqual([2, 32]);
      expectClose(lastHiddenState, ref.last_hidden_state.data as Float32Array, { relL2: TOL, label: `${name} last_hidden_state` });
      expectClose(pooledOutput, ref.pooler_output.data as Float32Array, { relL2: TOL, label: `${name} pooler_output` });
      tf.dispose([lastHiddenState, pooledOutput]);
      const kept = residency === 'resident' ? enc.weights.residentTensors : 0;
      if (residency === 'resident') expect(kept).toBe(clipTextArchitecture(enc.config).tensors.size - 2); // all but the 2 embedding tables
      expect(tf.memory().numTensors).toBe(before + kept);
      await enc.close();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('embeddings match', async () => {
    const ref = await loadFixture('text-encoders', `${name}.safetensors`);
    const enc = await loadClipTextModel(fixturePath('text-encoders', name));
    const emb = await enc.model.embed(Int32Array.from(ref.input_ids.data), 2, 16);
    expectClose(emb, ref.embeddings.data as Float32Array, { relL2: 1e-7, label: 'embeddings' });
    emb.dispose();
    await enc.close();
  });
});

describe('CLIPTextModel input checks', () => {
  it('rejects rows longer than max_position_embeddings and ids outside the vocabulary', async () => {
    const enc = await loadClipTextModel(fixturePath('text-encoders', 'clip'));
    await expect(enc.model.forward([new Array(17).fill(1)])).rejects.toBeInstanceOf(TextEncoderInputError);
    await expect(enc.model.forward([[1, 1000]])).rejects.toThrow(/outside the vocabulary \[0, 1000\)/);
    await enc.close();
  });

  it('shorter padded rows work (causal: a prefix gives the same rows as the full run)', async () => {
    const ref = await loadFixture('text-encoders', 'clip.safetensors');
    const enc = await loadClipTextModel(fixturePath('text-encoders', 'clip'));
    const row = idRows(ref.input_ids)[0].slice(0, 10);
    const { lastHiddenState, pooledOutput } = await enc.model.forward([row]);
    const want = (ref.last_hidden_state.data as Float32Array).slice(0, 10 * 32);
    expectClose(lastHiddenState, want, { relL2: TOL, label: 'prefix rows' });
    tf.dispose([lastHiddenState, pooledOutput]);
    await enc.close();
  });
});
