/**
 * weights/assemble.ts (the streamed transformer's one-pass decode + diffusers->BFL row ops + Linear transpose)
 * against the plain composition of the separate steps: decode with toFloat32, concatenate / swap rows, transpose.
 * Pure data movement, so the comparison is exact (bit patterns), on sizes that are not multiples of the 64-row
 * block, for every float dtype a FLUX checkpoint ships in.
 */
import { describe, expect, it } from 'vitest';
import { assemble, type AssembleOp, type RawTensor } from '../../src/weights/assemble.ts';
import { encodeFloat32, toFloat32, type Dtype } from '../../src/weights/dtypes.ts';

/** Deterministic bytes of a [rows, cols] tensor: every bit pattern the dtype has, cycled (NaN payloads too). */
function rawTensor(dtype: Dtype, shape: number[], seed: number, scale?: number): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  let bytes: Uint8Array;
  if (dtype === 'F32' || dtype === 'F64') {
    const v = dtype === 'F32' ? new Float32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = Math.sin(seed * 1000 + i) * 10 ** ((i % 7) - 3);
    bytes = new Uint8Array(v.buffer);
  } else if (dtype === 'BF16' || dtype === 'F16') {
    const u = new Uint16Array(n);
    for (let i = 0; i < n; i++) u[i] = (i * 40503 + seed * 7919) & 0xffff;
    bytes = new Uint8Array(u.buffer);
  } else {
    bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 151 + seed * 31) & 0xff;
  }
  return scale === undefined ? { dtype, shape, bytes } : { dtype, shape, bytes, scale };
}

/** The reference: decode each part, apply the row op, transpose [rows, cols] -> [cols, rows] (moving bit patterns:
 * a float read may canonicalise a NaN payload). */
function reference(parts: RawTensor[], op: AssembleOp, transpose: boolean): { bits: Uint32Array; shape: number[] } {
  const decoded = parts.map((p) => {
    const f = toFloat32(p.dtype, p.bytes);
    if (p.scale !== undefined) for (let i = 0; i < f.length; i++) f[i] = Math.fround(f[i]! * p.scale);
    return new Uint32Array(f.buffer, f.byteOffset, f.length);
  });
  const rowLen = parts[0]!.shape.slice(1).reduce((a, b) => a * b, 1);
  let rows: Uint32Array[] = [];
  for (const f of decoded) for (let r = 0; r < f.length / rowLen; r++) rows.push(f.subarray(r * rowLen, (r + 1) * rowLen));
  if (op === 'swap_halves') rows = [...rows.slice(rows.length / 2), ...rows.slice(0, rows.length / 2)];
  const R = rows.length;
  const out = new Uint32Array(R * rowLen);
  if (transpose) {
    for (let r = 0; r < R; r++) for (let c = 0; c < rowLen; c++) out[c * R + r] = rows[r]![c]!;
    return { bits: out, shape: [rowLen, R] };
  }
  rows.forEach((row, r) => out.set(row, r * rowLen));
  return { bits: out, shape: [R, ...parts[0]!.shape.slice(1)] };
}

function expectSame(parts: RawTensor[], op: AssembleOp, transpose: boolean, scratch?: Float32Array): void {
  const got = assemble(parts, op, transpose, scratch);
  const want = reference(parts, op, transpose);
  expect(got.shape).toEqual(want.shape);
  const bits = new Uint32Array(got.data.buffer, got.data.byteOffset, got.data.length);
  let mismatches = 0;
  for (let i = 0; i < want.bits.length; i++) if (bits[i] !== want.bits[i]) mismatches++;
  expect(mismatches).toBe(0);
  expect(bits.length).toBe(want.bits.length);
}

const DTYPES: Dtype[] = ['F32', 'BF16', 'F16', 'F8_E4M3', 'F8_E5M2', 'F64'];

describe('assemble', () => {
  describe.each(DTYPES)('%s', (dtype) => {
    it('rename: a Linear weight transposed to [in, out], a bias as is', () => {
      expectSame([rawTensor(dtype, [70, 131], 1)], 'rename', true);
      expectSame([rawTensor(dtype, [1, 1], 2)], 'rename', true);
      expectSame([rawTensor(dtype, [131], 3)], 'rename', false);
    });
    it('concat: q | k | v | mlp rows of unequal counts, transposed and not', () => {
      const parts = [rawTensor(dtype, [65, 67], 4), rawTensor(dtype, [63, 67], 5), rawTensor(dtype, [1, 67], 6), rawTensor(dtype, [130, 67], 7)];
      expectSame(parts, 'concat', true);
      expectSame(parts, 'concat', false);
      expectSame([rawTensor(dtype, [65], 8), rawTensor(dtype, [3], 9)], 'concat', false);
    });
    it('swap_halves: the two row halves exchanged, transposed and not', () => {
      expectSame([rawTensor(dtype, [130, 66], 10)], 'swap_halves', true);
      expectSame([rawTensor(dtype, [130], 11)], 'swap_halves', false);
    });
  });

  it('scaled fp8 applies fround(value * scale), like the dequantizing reader', () => {
    expectSame([rawTensor('F8_E4M3', [70, 65], 12, 0.0173)], 'rename', true);
    expectSame([rawTensor('F8_E4M3', [70, 65], 13, 3.5), rawTensor('F8_E4M3', [6, 65], 14)], 'concat', true);
    expectSame([rawTensor('F8_E5M2', [64], 15, 0.25)], 'rename', false);
  });

  it('fills a large-enough scratch buffer (a view of it), else allocates', () => {
    const scratch = new Float32Array(200 * 70).fill(7);
    const parts = [rawTensor('BF16', [70, 131], 16)];
    const a = assemble(parts, 'rename', true, scratch);
    expect(a.data.buffer).toBe(scratch.buffer);
    expectSame(parts, 'rename', true, scratch);
    const small = new Float32Array(10);
    expect(assemble(parts, 'rename', true, small).data.buffer).not.toBe(small.buffer);
    expectSame([rawTensor('F16', [130], 17)], 'swap_halves', false, scratch);
  });

  it('refuses parts that cannot combine', () => {
    expect(() => assemble([rawTensor('BF16', [4, 3], 1), rawTensor('BF16', [4, 5], 2)], 'concat', true)).toThrow(/differ beyond dim 0/);
    expect(() => assemble([rawTensor('BF16', [5, 3], 1)], 'swap_halves', true)).toThrow(/halves of 5 rows/);
    expect(() => assemble([rawTensor('BF16', [4, 3], 1), rawTensor('BF16', [4, 3], 2)], 'rename', true)).toThrow(/one part/);
    expect(() => assemble([rawTensor('BF16', [2, 3, 4], 1)], 'rename', true)).toThrow(/only 2-D/);
    expect(() => assemble([{ dtype: 'BF16', shape: [4, 3], bytes: new Uint8Array(10) }], 'rename', true)).toThrow(/has 10 bytes/);
    expect(() => assemble([], 'concat', false)).toThrow(/no parts/);
  });

  it('decodes BF16 / F16 bit patterns exactly (encode -> assemble round trip)', () => {
    const values = [0, -0, 1, -2.5, 65504, 1e-7, Infinity, -Infinity];
    for (const dtype of ['BF16', 'F16'] as const) {
      const bytes = encodeFloat32(dtype, values);
      const a = assemble([{ dtype, shape: [values.length], bytes }], 'rename', false);
      expect(Array.from(a.data)).toEqual(Array.from(toFloat32(dtype, bytes)));
    }
  });
});
