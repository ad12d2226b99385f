/**
 * CheckpointWeights (src/weights/checkpoint-weights.ts) on a small layout over memory and file checkpoints: the one
 * validation at open, streamed vs resident ownership, prefetch, embedding rows by byte range, the prepared layouts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPreTransposed } from '../../src/nn/linear.ts';
import { CheckpointWeights } from '../../src/weights/checkpoint-weights.ts';
import { memoryCheckpoint, openCheckpoint, type TensorReader } from '../../src/weights/checkpoint.ts';
import { expandRenames, type CheckpointLayout } from '../../src/weights/layout.ts';
import { writeSafetensors } from '../../src/weights/safetensors.ts';
import { WeightsError } from '../../src/weights/validate.ts';

class ToyError extends WeightsError {
  constructor(message: string) {
    super('TOY_WEIGHTS', message);
  }
}

const spec = { 'emb.weight': [5, 3], 'a.lin.weight': [2, 3], 'a.lin.bias': [2], 'b.conv.weight': [2, 2, 1, 1], 'b.norm.weight': [2] };
const layout = (renamed = false): CheckpointLayout => ({
  format: 'bfl-vae',
  model: 'toy',
  spec,
  rules: expandRenames(spec, renamed ? [{ model: 'b.conv', checkpoint: ['b.to_out'], op: 'conv1x1', why: 'linear vs conv' }] : []),
  tables: new Set(['emb.weight']),
  optional: new Map([['emb.position_ids', { shape: [1, 5], note: 'a buffer' }]]),
  error: ToyError,
  hint: 'Use the toy checkpoint.',
});
const seq = (n: number, from = 0) => Float32Array.from({ length: n }, (_, i) => from + i);
const values = (renamed = false) => ({
  'emb.weight': { data: seq(15), shape: [5, 3] },
  'a.lin.weight': { data: seq(6, 100), shape: [2, 3] },
  'a.lin.bias': { data: seq(2, 200), shape: [2] },
  ...(renamed ? { 'b.to_out.weight': { data: seq(4, 300), shape: [2, 2] } } : { 'b.conv.weight': { data: seq(4, 300), shape: [2, 2, 1, 1] } }),
  'b.norm.weight': { data: seq(2, 40), shape: [2] },
});

describe('validation at open', () => {
  it('names missing, unexpected and mis-shaped keys in one message, with the layout\'s error and hint', () => {
    const v: Record<string, { data: Float32Array; shape: number[] }> = values();
    delete v['a.lin.bias'];
    v['a.extra'] = { data: seq(1), shape: [1] };
    v['b.norm.weight'] = { data: seq(3), shape: [3] };
    v['emb.position_ids'] = { data: seq(5), shape: [1, 5] }; // optional: accepted
    let err: unknown;
    try {
      new CheckpointWeights(memoryCheckpoint(v, 'toy.safetensors'), layout());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ToyError);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as Error).message).toBe(
      'toy.safetensors does not match the toy: missing 1 key(s): a.lin.bias; unexpected 1 key(s): a.extra; ' +
        'wrong shape: b.norm.weight is [3], expected [2]. Use the toy checkpoint.',
    );
  });

  it('reads the keys under the prefix only (other models of a combined file are left alone)', () => {
    const v = Object.fromEntries(Object.entries(values()).map(([k, x]) => [`vae.${k}`, x]));
    const w = new CheckpointWeights(memoryCheckpoint({ ...v, 'model.other.weight': { data: seq(1), shape: [1] } }), layout(), { prefix: 'vae.' });
    expect(w.keysUnder('a.')).toEqual(['a.lin.weight', 'a.lin.bias']);
    expect(() => new CheckpointWeights(memoryCheckpoint(v), layout())).toThrow(/missing 5 key\(s\)/);
  });
});

describe('get, release, residency', () => {
  it('streamed: new tensors per get, disposed by release; laid out for compute', async () => {
    const w = new CheckpointWeights(memoryCheckpoint(values(true)), layout(true));
    const before = tf.memory().numTensors;
    const a = await w.get('a.');
    expect(Object.keys(a)).toEqual(['lin.weight', 'lin.bias']);
    expect(isPreTransposed(a['lin.weight']!)).toBe(true);
    expect(a['lin.weight']!.shape).toEqual([3, 2]);
    expect(Array.from(a['lin.weight']!.dataSync())).toEqual([100, 103, 101, 104, 102, 105]);
    const b = await w.get('b.');
    expect(b['conv.weight']!.shape).toEqual([1, 1, 2, 2]); // HWIO from a linear [out, in]
    expect(Array.from(b['conv.weight']!.dataSync())).toEqual([300, 302, 301, 303]);
    w.release('a.', a);
    w.release('b.', b);
    expect(tf.memory().numTensors).toBe(before);
    expect(w.residentTensors).toBe(0);
  });

  it('resident: built once and kept until dispose (same values as streamed)', async () => {
    const w = new CheckpointWeights(memoryCheckpoint(values()), layout(), { residency: 'resident' });
    const before = tf.memory().numTensors;
    const a1 = await w.get('a.');
    w.release('a.', a1);
    const a2 = await w.get('a.');
    expect(a2['lin.weight']).toBe(a1['lin.weight']);
    expect(w.residentTensors).toBe(2);
    w.loadAllSync();
    expect(w.residentTensors).toBe(5);
    expect(w.loaded('b.')['conv.weight']!.shape).toEqual([1, 1, 2, 2]);
    w.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('read-ahead', () => {
  /** A memory checkpoint whose reads are counted: how many bytes were asked for and not yet built into a tensor. */
  function counted(reader: TensorReader) {
    const sizes = new Map([...reader.tensors].map(([k, t]) => [k, t.shape.reduce((a, b) => a * b, 1) * 4]));
    const stats = { requested: 0, built: 0, maxAhead: 0 };
    const wrapped: TensorReader = {
      path: reader.path,
      files: reader.files,
      tensors: reader.tensors,
      readRange: (n, b, e) => reader.readRange(n, b, e),
      readBytes: async (name) => {
        stats.requested += sizes.get(name)!;
        stats.maxAhead = Math.max(stats.maxAhead, stats.requested - stats.built);
        await new Promise((r) => setTimeout(r, 1));
        return reader.readBytes(name);
      },
    };
    return { wrapped, stats, sizes };
  }

  it('loadAll reads at most readAheadBytes ahead of the tensor it builds (plus the one it needs), not the whole file', async () => {
    const v: Record<string, { data: Float32Array; shape: number[] }> = values();
    const { wrapped, stats, sizes } = counted(memoryCheckpoint(v));
    const order = ['emb.weight', 'a.lin.weight', 'a.lin.bias', 'b.conv.weight', 'b.norm.weight'];
    const w = new CheckpointWeights(wrapped, layout(), { residency: 'resident', readAheadBytes: 16 });
    await w.loadAll((done) => (stats.built += sizes.get(order[done - 1]!)!));
    expect(w.residentTensors).toBe(5);
    const total = [...sizes.values()].reduce((a, b) => a + b, 0);
    expect(stats.requested).toBe(total);
    // 16 bytes of window plus the largest tensor (emb.weight, 60 bytes) and the one that crossed the window
    expect(stats.maxAhead).toBeLessThanOrEqual(16 + 60 + 24);
    expect(stats.maxAhead).toBeLessThan(total);
    w.dispose();

    // without a bound every read starts at once
    const wide = counted(memoryCheckpoint(v));
    const all = new CheckpointWeights(wide.wrapped, layout(), { residency: 'resident', readAheadBytes: Infinity });
    await all.loadAll();
    expect(wide.stats.maxAhead).toBe(total);
    all.dispose();
  });
});

describe('prefetch and rows, from a file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flux-cw-'));
    const v = values();
    await writeSafetensors(join(dir, 'toy.safetensors'), Object.fromEntries(Object.entries(v).map(([k, x]) => [k, { dtype: 'BF16' as const, shape: x.shape, data: x.data }])));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the prefetched module once, before it is asked for', async () => {
    const ckpt = await openCheckpoint(join(dir, 'toy.safetensors'));
    const log: string[] = [];
    const reader: TensorReader = {
      path: ckpt.path,
      files: ckpt.files,
      tensors: ckpt.tensors,
      readBytes: (name) => (log.push(name), ckpt.readBytes(name)),
      readRange: (name, b, e) => ckpt.readRange(name, b, e),
    };
    const w = new CheckpointWeights(reader, layout());
    w.prefetch('b.');
    expect(log).toEqual(['b.conv.weight', 'b.norm.weight']);
    const b = await w.get('b.');
    expect(log).toHaveLength(2);
    expect(Array.from(b['norm.weight']!.dataSync())).toEqual([40, 41]); // exact in bf16
    w.release('b.', b);
    await ckpt.close();
  });

  it('gathers embedding rows by byte range, each distinct row once', async () => {
    const ckpt = await openCheckpoint(join(dir, 'toy.safetensors'));
    const w = new CheckpointWeights(ckpt, layout());
    expect(Array.from(await w.rows('emb.weight', [4, 0, 4]))).toEqual([12, 13, 14, 0, 1, 2, 12, 13, 14]);
    expect(w.rowBytesRead).toBe(2 * 3 * 2); // two distinct bf16 rows of 3
    await expect(w.rows('emb.weight', [5])).rejects.toThrow(ToyError);
    await ckpt.close();
  });
});
