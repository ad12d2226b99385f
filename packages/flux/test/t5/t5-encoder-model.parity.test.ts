/**
 * T5EncoderModel (transformers 5.23, tiny gated-gelu config, fp32) loaded from a sharded folder, against the
 * reference: per block and whole model, relative L2 <= 1e-5; streamed and resident give identical outputs; strict
 * key check; embedding rows read by byte range; the full-size T5-XXL key set walks through a sparse checkpoint.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { isPreTransposed } from '../../src/nn/linear.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFluxError } from '@flux-ts/core';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { T5_XXL, t5ConfigFromJson } from '../../src/t5/config.ts';
import { computeBias, relativePositionBucket } from '../../src/t5/t5-attention.ts';
import { t5Layout } from '../../src/t5/keys.ts';
import { T5Block } from '../../src/t5/t5-block.ts';
import { loadT5EncoderModel } from '../../src/text-encoders/load.ts';
import { TextEncoderInputError, TextEncoderWeightsError } from '../../src/text-encoders/token-ids.ts';
import { t5EncoderArchitecture } from '../../src/weights/architectures.ts';
import { CheckpointWeights } from '../../src/weights/checkpoint-weights.ts';
import type { TensorReader } from '../../src/weights/checkpoint.ts';
import { writeSparseSafetensors } from '../../src/weights/safetensors.ts';

const TOL = 1e-5;
const DIR = fixturePath('text-encoders', 't5');

function idRows(t: { shape: number[]; data: ArrayLike<number> }): number[][] {
  const [B, L] = t.shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.data).slice(b * L, (b + 1) * L));
}

describe('T5 relative position buckets', () => {
  it('match T5Attention._relative_position_bucket for -600..600', async () => {
    const f = await loadFixture('text-encoders', 't5-buckets.safetensors');
    const rel = f.relative_position.data;
    const want = f.bucket.data;
    const got = Array.from(rel, (r) => relativePositionBucket(r, 32, 128));
    expect(got).toEqual(Array.from(want));
  });
});

describe('T5EncoderModel (tiny, sharded folder)', () => {
  let ref: Awaited<ReturnType<typeof loadFixture>>;
  beforeAll(async () => {
    ref = await loadFixture('text-encoders', 't5.safetensors');
  });

  it('config.json parses as gated-gelu', async () => {
    const enc = await loadT5EncoderModel(DIR);
    expect(enc.config).toMatchObject({ dModel: 32, numLayers: 3, numHeads: 4, isGatedAct: true, denseActFn: 'gelu_new' });
    expect(enc.weights.reader.files.length).toBeGreaterThan(1); // the index was exercised
    await enc.close();
  });

  it('embeddings and position bias match', async () => {
    const enc = await loadT5EncoderModel(DIR);
    const ids = idRows(ref.input_ids);
    const emb = await enc.model.embed(ids);
    expectClose(emb, ref.embeddings.data as Float32Array, { relL2: 0, label: 'shared(ids)' });
    emb.dispose();
    const prefix = 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.';
    const w = await enc.weights.get(prefix);
    const bias = computeBias(w.weight as tf.Tensor2D, ids[0].length, enc.config);
    expect(bias.shape).toEqual([1, 4, 150, 150]);
    expectClose(bias, ref.position_bias.data as Float32Array, { relL2: 0, label: 'compute_bias' });
    bias.dispose();
    enc.weights.release(prefix, w);
    await enc.close();
  });

  for (const residency of ['streamed', 'resident'] as const) {
    it(`${residency}: every block and last_hidden_state match (relL2 <= 1e-5), no tensors left behind`, async () => {
      const enc = await loadT5EncoderModel(DIR, { residency });
      const before = tf.memory().numTensors;
      const blocks: Float32Array[] = [];
      const out = await enc.model.forward(idRows(ref.input_ids), { onBlock: async (_i, h) => void blocks.push((await h.data()) as Float32Array) });
      expect(out.shape).toEqual([2, 150, 32]);
      expect(blocks.length).toBe(3);
      blocks.forEach((b, i) => expectClose(b, ref[`block_${i}`].data as Float32Array, { relL2: TOL, label: `block ${i}` }));
      expectClose(out, ref.last_hidden_state.data as Float32Array, { relL2: TOL, label: 'last_hidden_state' });
      out.dispose();
      const kept = residency === 'resident' ? enc.weights.residentTensors : 0;
      expect(tf.memory().numTensors).toBe(before + kept);
      if (residency === 'resident') expect(kept).toBe(t5EncoderArchitecture(enc.config).tensors.size - 1); // all but `shared`
      await enc.close();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('streamed and resident outputs are identical', async () => {
    const ids = idRows(ref.input_ids);
    const outs: Float32Array[] = [];
    for (const residency of ['streamed', 'resident'] as const) {
      const enc = await loadT5EncoderModel(DIR, { residency });
      const o = await enc.model.forward(ids);
      outs.push((await o.data()) as Float32Array);
      o.dispose();
      await enc.close();
    }
    expect(outs[1]).toEqual(outs[0]);
  });

  it('streamed: reads the next block while the current one runs, each tensor once', async () => {
    const enc = await loadT5EncoderModel(DIR);
    const ck = enc.weights.reader;
    const log: string[] = [];
    const readBytes = ck.readBytes.bind(ck);
    ck.readBytes = (name: string) => (log.push(`read ${name}`), readBytes(name));
    const o = await enc.model.forward(idRows(ref.input_ids), { onBlock: (i) => void log.push(`ran ${i}`) });
    o.dispose();
    const reads = log.filter((l) => l.startsWith('read '));
    expect(new Set(reads).size).toBe(reads.length);
    expect(reads.length).toBe(t5EncoderArchitecture(enc.config).tensors.size - 1); // all but `shared` (read by rows)
    const firstRead = (block: number) => log.findIndex((l) => l.startsWith(`read encoder.block.${block}.`));
    expect(firstRead(1)).toBeLessThan(log.indexOf('ran 0'));
    expect(firstRead(2)).toBeLessThan(log.indexOf('ran 1'));
    expect(log.indexOf('read encoder.final_layer_norm.weight')).toBeLessThan(log.indexOf('ran 2'));
    await enc.close();
  });

  it('reads only the embedding rows it needs, by byte range', async () => {
    const enc = await loadT5EncoderModel(DIR);
    const ids = idRows(ref.input_ids);
    const unique = new Set(ids.flat()).size;
    const rows = await enc.weights.rows('shared.weight', ids.flat());
    expect(rows.length).toBe(2 * 150 * 32);
    expect(enc.weights.rowBytesRead).toBe(unique * 32 * 4);
    await enc.close();
  });

  it('rejects bad ids with a typed error', async () => {
    const enc = await loadT5EncoderModel(DIR);
    await expect(enc.model.forward([[1, 2, 128]])).rejects.toBeInstanceOf(TextEncoderInputError);
    await expect(enc.model.forward([[1, 2], [3]])).rejects.toBeInstanceOf(TextEncoderInputError);
    await expect(enc.model.forward([[1, 2.5]])).rejects.toBeInstanceOf(TextEncoderInputError);
    await enc.close();
  });
});

describe('strict T5 key check', () => {
  const cfg = t5ConfigFromJson({ d_model: 8, d_kv: 2, num_heads: 4, d_ff: 16, num_layers: 2, vocab_size: 10, feed_forward_proj: 'gated-gelu' });
  const arch = t5EncoderArchitecture(cfg);
  const full = () => new Map([...arch.tensors].map(([k, s]) => [k, { dtype: 'F32' as const, shape: s }]));
  /** The validation CheckpointWeights makes on open, over a header-only table. */
  const check = (tensors: Map<string, { dtype: 'F32'; shape: number[] }>, path = 'x') => {
    const reader: TensorReader = { path, files: [], tensors, readBytes: async () => new Uint8Array(0), readRange: async () => new Uint8Array(0) };
    new CheckpointWeights(reader, t5Layout(cfg)).dispose();
  };

  it('accepts the exact set and the tied encoder.embed_tokens copy', () => {
    expect(() => check(full())).not.toThrow();
    const m = full();
    m.set('encoder.embed_tokens.weight', { dtype: 'F32', shape: [10, 8] });
    expect(() => check(m)).not.toThrow();
  });

  it('names missing, unexpected and mis-shaped keys', () => {
    const m = full();
    m.delete('encoder.block.1.layer.1.DenseReluDense.wo.weight');
    m.set('encoder.block.2.layer.0.SelfAttention.q.weight', { dtype: 'F32', shape: [8, 8] });
    m.set('encoder.final_layer_norm.weight', { dtype: 'F32', shape: [9] });
    m.set('encoder.embed_tokens.weight', { dtype: 'F32', shape: [10, 9] });
    let err: unknown;
    try {
      check(m, 'ckpt.safetensors');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TextEncoderWeightsError);
    expect(isFluxError(err)).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('missing 1 key(s): encoder.block.1.layer.1.DenseReluDense.wo.weight');
    expect(msg).toContain('unexpected 1 key(s): encoder.block.2.layer.0.SelfAttention.q.weight');
    expect(msg).toContain('encoder.final_layer_norm.weight is [9], expected [8]');
    expect(msg).toContain('encoder.embed_tokens.weight is [10, 9], expected [10, 8]');
  });

  it('a folder with a wrong config.json fails to load with the key diff', async () => {
    const dir = await mkdtemp(join(tmpdir(), 't5-bad-'));
    try {
      await writeSparseSafetensors(join(dir, 'model.safetensors'), [...arch.tensors].map(([name, shape]) => ({ name, dtype: 'F32' as const, shape })));
      await writeFile(join(dir, 'config.json'), JSON.stringify({ d_model: 8, d_kv: 2, num_heads: 4, d_ff: 16, num_layers: 3, vocab_size: 10, feed_forward_proj: 'gated-gelu' }));
      await expect(loadT5EncoderModel(dir)).rejects.toThrow(/missing 9 key\(s\): encoder\.block\.2\./);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('full-size T5-XXL, sparse bf16 checkpoint (2 shards + index)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 't5-xxl-sparse-'));
    const arch = t5EncoderArchitecture(T5_XXL);
    const entries = [...arch.tensors].map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
    const half = entries.findIndex((e) => e.name.startsWith('encoder.block.12.'));
    const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const parts = [entries.slice(0, half), entries.slice(half)];
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let s = 0; s < 2; s++) {
      total += await writeSparseSafetensors(join(dir, files[s]), parts[s]);
      for (const e of parts[s]) weightMap[e.name] = files[s];
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
    await writeFile(join(dir, 'config.json'), JSON.stringify({
      architectures: ['T5EncoderModel'], d_ff: 10240, d_kv: 64, d_model: 4096, dense_act_fn: 'gelu_new', feed_forward_proj: 'gated-gelu',
      is_gated_act: true, layer_norm_epsilon: 1e-6, model_type: 't5', num_heads: 64, num_layers: 24, relative_attention_max_distance: 128,
      relative_attention_num_buckets: 32, vocab_size: 32128, torch_dtype: 'bfloat16',
    }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads strictly, walks one block with the real shapes and gathers embedding rows without reading the table', async () => {
    const enc = await loadT5EncoderModel(dir);
    expect(enc.config).toMatchObject({ dModel: 4096, numLayers: 24, numHeads: 64, dFf: 10240 });
    expect(enc.weights.reader.files.length).toBe(2);
    const arch = t5EncoderArchitecture(T5_XXL);
    // every key the streamed walk asks for exists, across all blocks, and covers the architecture but `shared`
    const walked = new Set<string>(['encoder.final_layer_norm.weight']);
    for (let i = 0; i < 24; i++) for (const k of Object.keys(T5Block.spec(enc.config, i))) walked.add(`encoder.block.${i}.${k}`);
    expect([...arch.tensors.keys()].filter((k) => !walked.has(k))).toEqual(['shared.weight']);
    // one block, tensor by tensor (~170 MB float32 at most at a time)
    const before = tf.memory().numTensors;
    for (const key of enc.weights.keysUnder('encoder.block.5.')) {
      const w = await enc.weights.get(key);
      const t = w['']!;
      // Linear weights come transposed to [in, out] (a plain matMul); norms and the bias table as stored
      const linear = /\.(q|k|v|o|wi_0|wi_1|wo)\.weight$/.test(key);
      expect(isPreTransposed(t)).toBe(linear);
      expect(linear ? [...t.shape].reverse() : t.shape).toEqual(arch.tensors.get(key));
      enc.weights.release(key, w);
    }
    expect(tf.memory().numTensors).toBe(before);
    const ids = [0, 1, 32127, 1, 500];
    const rows = await enc.weights.rows('shared.weight', ids);
    expect(rows.length).toBe(5 * 4096);
    expect(enc.weights.rowBytesRead).toBe(4 * 4096 * 2); // 4 distinct rows of bf16, not 263 MB
    await enc.close();
  });
});
