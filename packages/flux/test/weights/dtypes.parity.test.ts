import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  DTYPE_SIZES, encodeFloat32, float32ToBf16Bits, float32ToF16Bits, toFloat32, toNative, type Dtype,
} from '../../src/weights/dtypes.ts';
import { loadSafetensors } from '../../src/weights/safetensors.ts';

const FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/safetensors/', import.meta.url));

// Independent decoders straight from the formulas (flux-reference-facts.md §7), using Math.pow.
function ieee(bitsValue: number, expBits: number, manBits: number, hasInf: boolean): number {
  const s = (bitsValue >> (expBits + manBits)) & 1 ? -1 : 1;
  const e = (bitsValue >> manBits) & ((1 << expBits) - 1);
  const m = bitsValue & ((1 << manBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  const emax = (1 << expBits) - 1;
  if (hasInf && e === emax) return m === 0 ? s * Infinity : NaN;
  if (e === 0) return s * (m / Math.pow(2, manBits)) * Math.pow(2, 1 - bias);
  return s * (1 + m / Math.pow(2, manBits)) * Math.pow(2, e - bias);
}
const bf16Formula = (b: number) => ieee(b, 8, 7, true);
const f16Formula = (b: number) => ieee(b, 5, 10, true);
const e5m2Formula = (b: number) => ieee(b, 5, 2, true);
function e4m3Formula(b: number): number {
  if ((b & 0x7f) === 0x7f) return NaN; // e4m3fn: no infinities, only 0x7F/0xFF are NaN
  return ieee(b, 4, 3, false);
}

const fmt = (v: number) => (Object.is(v, -0) ? '-0' : String(v));

function allPatterns(n: number, size: 1 | 2): Uint8Array {
  if (size === 1) return Uint8Array.from({ length: n }, (_, i) => i);
  return new Uint8Array(Uint16Array.from({ length: n }, (_, i) => i).buffer);
}

/** Same value, treating NaN == NaN and distinguishing +0 / -0. Returns the first mismatching index. */
function firstMismatch(actual: Float32Array, expected: (i: number) => number): number {
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], Math.fround(expected(i)))) return i;
  }
  return -1;
}

const CASES: { dtype: Dtype; n: number; size: 1 | 2; formula: (b: number) => number; fixture: string }[] = [
  { dtype: 'BF16', n: 65536, size: 2, formula: bf16Formula, fixture: 'bf16' },
  { dtype: 'F16', n: 65536, size: 2, formula: f16Formula, fixture: 'f16' },
  { dtype: 'F8_E4M3', n: 256, size: 1, formula: e4m3Formula, fixture: 'f8_e4m3' },
  { dtype: 'F8_E5M2', n: 256, size: 1, formula: e5m2Formula, fixture: 'f8_e5m2' },
];

describe('float conversion of every bit pattern', async () => {
  const torchTables = await loadSafetensors(`${FIXTURES}dtype_tables.safetensors`);

  for (const c of CASES) {
    it(`${c.dtype}: all ${c.n} patterns match the formula`, () => {
      const out = toFloat32(c.dtype, allPatterns(c.n, c.size));
      expect(out.length).toBe(c.n);
      const bad = firstMismatch(out, c.formula);
      expect(bad, bad < 0 ? '' : `pattern 0x${bad.toString(16)}: got ${fmt(out[bad])}, formula ${fmt(c.formula(bad))}`).toBe(-1);
    });

    it(`${c.dtype}: all ${c.n} patterns match torch's .float()`, () => {
      const t = torchTables[c.fixture];
      expect(t.dtype).toBe('F32');
      expect(t.shape).toEqual([c.n]);
      const ref = t.data as Float32Array;
      const out = toFloat32(c.dtype, allPatterns(c.n, c.size));
      const bad = firstMismatch(out, (i) => ref[i]);
      expect(bad, bad < 0 ? '' : `pattern 0x${bad.toString(16)}: got ${fmt(out[bad])}, torch ${fmt(ref[bad])}`).toBe(-1);
    });
  }

  it('spot values: NaN, signed zero, subnormals, extremes', () => {
    const f16 = toFloat32('F16', new Uint8Array(new Uint16Array([0x0000, 0x8000, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x7e00]).buffer));
    expect(Object.is(f16[0], 0)).toBe(true);
    expect(Object.is(f16[1], -0)).toBe(true);
    expect(f16[2]).toBe(2 ** -24);
    expect(f16[3]).toBe(65504);
    expect(f16[4]).toBe(Infinity);
    expect(f16[5]).toBe(-Infinity);
    expect(f16[6]).toBeNaN();
    const e4 = toFloat32('F8_E4M3', Uint8Array.from([0x00, 0x80, 0x01, 0x7e, 0xfe, 0x7f, 0xff, 0x78]));
    expect([e4[0], e4[2], e4[3], e4[4], e4[7]]).toEqual([0, 2 ** -9, 448, -448, 256]);
    expect(Object.is(e4[1], -0)).toBe(true);
    expect(e4[5]).toBeNaN();
    expect(e4[6]).toBeNaN();
    const e5 = toFloat32('F8_E5M2', Uint8Array.from([0x7b, 0x7c, 0x7d, 0x01]));
    expect([e5[0], e5[1], e5[3]]).toEqual([57344, Infinity, 2 ** -16]);
    expect(e5[2]).toBeNaN();
    const bf = toFloat32('BF16', new Uint8Array(new Uint16Array([0x3f80, 0xc040, 0x0001, 0x7fc0]).buffer));
    expect([bf[0], bf[1], bf[2]]).toEqual([1, -3, 2 ** -133]);
    expect(bf[3]).toBeNaN();
  });
});

describe('layout handling', () => {
  it('misaligned byte offsets give the same result as aligned ones', () => {
    const values = [1.5, -2, 3.25, 1e-3, -0];
    for (const [dtype, raw] of [
      ['F32', new Uint8Array(new Float32Array(values).buffer)],
      ['F64', new Uint8Array(new Float64Array(values).buffer)],
      ['BF16', encodeFloat32('BF16', values)],
      ['F16', encodeFloat32('F16', values)],
      ['I32', new Uint8Array(new Int32Array([1, -2, 3, 4, 5]).buffer)],
      ['I64', new Uint8Array(new BigInt64Array([1n, -2n, 3n, 4n, 5n]).buffer)],
    ] as [Dtype, Uint8Array][]) {
      const shifted = new Uint8Array(raw.byteLength + 3);
      shifted.set(raw, 3);
      const view = shifted.subarray(3); // byteOffset 3: no 2/4/8-byte typed view possible
      expect(Array.from(toFloat32(dtype, view)), dtype).toEqual(Array.from(toFloat32(dtype, raw)));
      expect(Array.from(toNative(dtype, view) as ArrayLike<unknown>), dtype).toEqual(Array.from(toNative(dtype, raw) as ArrayLike<unknown>));
    }
  });

  it('integers and BOOL read as native typed arrays; toFloat32 converts by value', () => {
    const cases: [Dtype, ArrayBufferView, Function][] = [
      ['BOOL', Uint8Array.from([1, 0, 1]), Uint8Array],
      ['U8', Uint8Array.from([0, 255]), Uint8Array],
      ['I8', Int8Array.from([-128, 127]), Int8Array],
      ['I16', Int16Array.from([-32768, 32767]), Int16Array],
      ['U16', Uint16Array.from([0, 65535]), Uint16Array],
      ['I32', Int32Array.from([-(2 ** 31), 2 ** 31 - 1]), Int32Array],
      ['U32', Uint32Array.from([0, 2 ** 32 - 1]), Uint32Array],
      ['I64', BigInt64Array.from([-(2n ** 63n), 5n]), BigInt64Array],
      ['U64', BigUint64Array.from([2n ** 64n - 1n, 5n]), BigUint64Array],
      ['F64', Float64Array.from([0.1, -1e300]), Float64Array],
    ];
    for (const [dtype, arr, ctor] of cases) {
      const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      expect(bytes.byteLength / DTYPE_SIZES[dtype]).toBe((arr as unknown as ArrayLike<unknown>).length);
      const native = toNative(dtype, bytes);
      expect(native).toBeInstanceOf(ctor);
      expect(Array.from(native as ArrayLike<unknown>)).toEqual(Array.from(arr as unknown as ArrayLike<unknown>));
      const f = toFloat32(dtype, bytes);
      const expected = Array.from(arr as unknown as ArrayLike<number | bigint>, (v) => Math.fround(Number(v)));
      expect(Array.from(f), dtype).toEqual(expected);
    }
  });

  it('rejects byte lengths that are not whole elements', () => {
    expect(() => toFloat32('F32', new Uint8Array(6))).toThrow(/not a whole number of F32 elements/);
  });

  it('writes into a caller-provided output array', () => {
    const out = new Float32Array(2);
    expect(toFloat32('BF16', new Uint8Array(new Uint16Array([0x3f80, 0x4000]).buffer), out)).toBe(out);
    expect(Array.from(out)).toEqual([1, 2]);
    expect(() => toFloat32('BF16', new Uint8Array(2), out)).toThrow(/output has 2 elements, expected 1/);
  });
});

describe('float32 -> BF16 / F16 encoders', () => {
  it('every non-NaN 16-bit value encodes back to its own bits', () => {
    for (const [dtype, encode] of [['BF16', float32ToBf16Bits], ['F16', float32ToF16Bits]] as const) {
      const decoded = toFloat32(dtype, allPatterns(65536, 2));
      for (let b = 0; b < 65536; b++) {
        const v = decoded[b];
        if (Number.isNaN(v)) {
          expect(Number.isNaN(toFloat32(dtype, new Uint8Array(new Uint16Array([encode(v)]).buffer))[0])).toBe(true);
          continue;
        }
        if (encode(v) !== b) expect(`${dtype} 0x${b.toString(16)} -> 0x${encode(v).toString(16)}`).toBe('round trip');
      }
    }
  });

  it('rounds to nearest, ties to even, overflow and underflow like IEEE', () => {
    // BF16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); a hair above rounds up.
    expect(float32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, odd below -> up to even
    expect(float32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // rounds up to inf
    // F16
    expect(float32ToF16Bits(65504)).toBe(0x7bff);
    expect(float32ToF16Bits(65520)).toBe(0x7c00); // halfway to 2^16: ties to even = inf
    expect(float32ToF16Bits(65519)).toBe(0x7bff);
    expect(float32ToF16Bits(1e10)).toBe(0x7c00);
    expect(float32ToF16Bits(-1e10)).toBe(0xfc00);
    expect(float32ToF16Bits(2 ** -25)).toBe(0x0000); // half the smallest subnormal: tie to even (0)
    expect(float32ToF16Bits(2 ** -25 + 2 ** -35)).toBe(0x0001);
    expect(float32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp: tie, odd -> even
    expect(float32ToF16Bits(2 ** -14 - 2 ** -26)).toBe(0x0400); // rounds up into the smallest normal
    expect(float32ToF16Bits(-0)).toBe(0x8000);
    expect(float32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });
});
