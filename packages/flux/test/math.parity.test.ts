/**
 * Parity of math.ts (attention, rope, applyRope, timestepEmbedding) with BFL flux math.py / layers.py
 * (transcribed and cross-checked against diffusers in test/reference/gen_nn.py).
 * Tolerance: relative L2 <= 1e-5 (fp32 on both sides).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu'; // fallback when no test setup picked a backend
import { beforeAll, describe, expect, it } from 'vitest';
import { compareArrays, expectClose } from '../../../test/harness/compare.ts';
import { loadFixture, type FixtureTensor } from '../../../test/harness/fixtures.ts';
import { applyRope, attention, rope, timestepEmbedding, type Rope } from '../src/math.ts';

const TOL = 1e-5;
const T = (f: FixtureTensor) => tf.tensor(f.data as Float32Array, f.shape);

/** BFL rope matrices [..., D/2, 2, 2] = [[cos, -sin], [sin, cos]] -> { cos, sin } [..., D/2]. */
function fromMatrices(f: FixtureTensor): Rope {
  const n = f.data.length / 4;
  const cos = new Float32Array(n);
  const sin = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    cos[i] = f.data[4 * i] as number; // [0][0]
    sin[i] = f.data[4 * i + 2] as number; // [1][0]
  }
  const shape = f.shape.slice(0, -2);
  return { cos: tf.tensor(cos, shape), sin: tf.tensor(sin, shape) };
}

beforeAll(async () => {
  await tf.ready();
});

describe('rope', () => {
  it('rope(pos, 8, 10000) matches BFL rope', async () => {
    const f = await loadFixture('nn', 'rope.safetensors');
    const ref = fromMatrices(f.freqs);
    const pos = T(f.pos);
    const r = rope(pos, 8, 10000);
    expect(r.cos.shape).toEqual([2, 10, 4]);
    expectClose(r.cos, ref.cos, { relL2: TOL, label: 'rope cos' });
    expectClose(r.sin, ref.sin, { relL2: TOL, label: 'rope sin' });
    // the matrices' other column is (-sin, cos)
    const n = f.freqs.data.length / 4;
    for (let i = 0; i < n; i++) {
      expect(f.freqs.data[4 * i + 1]).toBe(-f.freqs.data[4 * i + 2]);
      expect(f.freqs.data[4 * i + 3]).toBe(f.freqs.data[4 * i]);
    }
    tf.dispose([pos, r.cos, r.sin, ref.cos, ref.sin]);
  });

  it('per-axis ropes concatenated reproduce BFL EmbedND (axes [2, 6, 8])', async () => {
    const f = await loadFixture('nn', 'rope.safetensors');
    const ref = fromMatrices(f.pe); // [B, 1, L, 8]
    const ids = T(f.ids); // [B, L, 3]
    const axes = [2, 6, 8];
    const cols = tf.unstack(ids, 2); // 3 x [B, L]
    const parts = cols.map((p, i) => rope(p, axes[i], 10000));
    const cos = tf.expandDims(tf.concat(parts.map((p) => p.cos), -1), 1);
    const sin = tf.expandDims(tf.concat(parts.map((p) => p.sin), -1), 1);
    expect(cos.shape).toEqual(ref.cos.shape);
    expectClose(cos, ref.cos, { relL2: TOL, label: 'EmbedND cos' });
    expectClose(sin, ref.sin, { relL2: TOL, label: 'EmbedND sin' });
    tf.dispose([ref.cos, ref.sin, ids, ...cols, ...parts.flatMap((p) => [p.cos, p.sin]), cos, sin]);
  });

  it('applyRope matches BFL apply_rope', async () => {
    const f = await loadFixture('nn', 'rope.safetensors');
    const pe = fromMatrices(f.pe);
    const [q, k] = [T(f.q), T(f.k)];
    const [qr, kr] = applyRope(q, k, pe);
    expect(qr.shape).toEqual(f.q_rot.shape);
    expectClose(qr, f.q_rot.data, { relL2: TOL, label: 'applyRope q' });
    expectClose(kr, f.k_rot.data, { relL2: TOL, label: 'applyRope k' });
    tf.dispose([pe.cos, pe.sin, q, k, qr, kr]);
  });
});

describe('attention', () => {
  it('matches BFL attention with RoPE, and SDPA without', async () => {
    const f = await loadFixture('nn', 'attention.safetensors');
    const [q, k, v] = [T(f.q), T(f.k), T(f.v)];
    const pe = fromMatrices(f.pe);
    const out = attention(q, k, v, pe);
    expect(out.shape).toEqual(f.out.shape); // [B, L, H*D]
    expectClose(out, f.out.data, { relL2: TOL, label: 'attention' });
    const nope = attention(q, k, v);
    expectClose(nope, f.out_nope.data, { relL2: TOL, label: 'attention without pe' });
    tf.dispose([q, k, v, pe.cos, pe.sin, out, nope]);
  });

  it('gives identical results in head chunks (H = 3, chunks of 1 and 2)', async () => {
    const f = await loadFixture('nn', 'attention.safetensors');
    const [q, k, v] = [T(f.q), T(f.k), T(f.v)];
    const pe = fromMatrices(f.pe);
    const full = attention(q, k, v, pe);
    const fullData = full.dataSync();
    for (const headChunk of [1, 2, 3, 8]) {
      const c = attention(q, k, v, pe, { headChunk });
      expect(c.shape).toEqual(full.shape);
      // every head goes through the same ops, only the batching over heads changes: bit-identical on the
      // cpu and wasm backends; native TensorFlow may block a batched matmul differently (seen: 2.4e-7 abs)
      const { relL2, maxAbs } = compareArrays(c.dataSync(), fullData);
      if (tf.getBackend() === 'tensorflow') expect(relL2, `headChunk ${headChunk}`).toBeLessThanOrEqual(1e-6);
      else expect(maxAbs, `headChunk ${headChunk}`).toBe(0);
      c.dispose();
    }
    expect(() => attention(q, k, v, pe, { headChunk: 0 })).toThrow(/headChunk/);
    tf.dispose([q, k, v, pe.cos, pe.sin, full]);
  });
});

describe('timestepEmbedding', () => {
  it('matches BFL timestep_embedding(t, 256) and an odd-dim variant', async () => {
    const f = await loadFixture('nn', 'timestep_embedding.safetensors');
    const t = T(f.t);
    const emb = timestepEmbedding(t, 256);
    expect(emb.shape).toEqual(f.emb.shape);
    expectClose(emb, f.emb.data, { relL2: TOL, label: 'timestepEmbedding 256' });
    const odd = timestepEmbedding(t, 33, 100, 10);
    expect(odd.shape).toEqual([5, 33]);
    expectClose(odd, f.emb_odd.data, { relL2: TOL, label: 'timestepEmbedding 33' });
    tf.dispose([t, emb, odd]);
  });
});

describe('memory', () => {
  it('leaves the tensor count unchanged', () => {
    const q = tf.randomNormal([1, 4, 6, 8]);
    const k = tf.randomNormal([1, 4, 6, 8]);
    const v = tf.randomNormal([1, 4, 6, 8]);
    const pos = tf.randomUniform([1, 6], 0, 10);
    const t = tf.tensor1d([0.1, 0.9]);
    const before = tf.memory().numTensors;
    const r = rope(pos, 8, 10000);
    const pe: Rope = { cos: tf.expandDims(r.cos, 1), sin: tf.expandDims(r.sin, 1) };
    const afterRope = tf.memory().numTensors;
    expect(afterRope - before).toBe(4);
    tf.dispose(applyRope(q, k, pe));
    tf.dispose(attention(q, k, v, pe));
    tf.dispose(attention(q, k, v, pe, { headChunk: 3 }));
    tf.dispose(attention(q, k, v));
    tf.dispose(timestepEmbedding(t, 16));
    expect(tf.memory().numTensors).toBe(afterRope);
    tf.dispose([r.cos, r.sin, pe.cos, pe.sin]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([q, k, v, pos, t]);
  });
});
