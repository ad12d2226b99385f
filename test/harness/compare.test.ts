import { describe, expect, it } from 'vitest';
import { compareArrays, expectClose, type TensorLike } from './compare.ts';

describe('compareArrays', () => {
  it('computes maxAbs, relL2 and the worst index', () => {
    const c = compareArrays([1, 2, 3, 4], [1, 2, 3.5, 4]);
    expect(c.n).toBe(4);
    expect(c.maxAbs).toBeCloseTo(0.5, 12);
    expect(c.worstIndex).toBe(2);
    expect(c.relL2).toBeCloseTo(0.5 / Math.sqrt(1 + 4 + 12.25 + 16), 12);
  });

  it('is zero for identical inputs, including typed arrays', () => {
    const e = new Float32Array([0.1, -2, 3e-8, 1e6]);
    expect(compareArrays(Float32Array.from(e), e)).toEqual({ maxAbs: 0, relL2: 0, worstIndex: 0, n: 4 });
  });

  it('defines relL2 against an all-zero expectation (0 if equal, else Infinity)', () => {
    expect(compareArrays([0, 0], [0, 0]).relL2).toBe(0);
    expect(compareArrays([0, 1e-9], [0, 0]).relL2).toBe(Infinity);
    expect(compareArrays([], []).n).toBe(0);
    expect(compareArrays([], []).relL2).toBe(0);
    expect(compareArrays([], []).worstIndex).toBe(-1);
  });

  it('treats NaN in actual where expected is finite as infinitely wrong', () => {
    const c = compareArrays([1, NaN, 3], [1, 2, 3]);
    expect(c.maxAbs).toBe(Infinity);
    expect(c.relL2).toBe(Infinity);
    expect(c.worstIndex).toBe(1);
    expect(compareArrays([Infinity, 1], [1, 1]).relL2).toBe(Infinity);
    expect(compareArrays([-Infinity], [Infinity]).relL2).toBe(Infinity);
  });

  it('lets matching non-finite values agree', () => {
    const c = compareArrays([NaN, Infinity, 2], [NaN, Infinity, 2]);
    expect(c.relL2).toBe(0);
    expect(c.maxAbs).toBe(0);
  });

  it('rejects length mismatches', () => {
    expect(() => compareArrays([1, 2], [1, 2, 3])).toThrow(/length mismatch/);
  });
});

describe('expectClose', () => {
  const expected = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i));

  it('passes within tolerance', () => {
    const actual = expected.map((v) => v * (1 + 1e-7));
    expect(() => expectClose(actual, expected, { relL2: 1e-6 })).not.toThrow();
  });

  it('fails on relL2 above tolerance with a readable report', () => {
    const actual = Float32Array.from(expected);
    actual[37] += 0.01;
    let msg = '';
    try {
      expectClose(actual, expected, { relL2: 1e-5, label: 'linear y' });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^linear y: not close \(n = 100\)/);
    expect(msg).toMatch(/relL2 += [0-9.e-]+ +\(tolerance 1\.000e-5\) +FAIL/);
    expect(msg).toMatch(/maxAbs = 0\.0(1000|0999)/);
    expect(msg).toContain(`worst index 37: actual ${actual[37].toPrecision(7)}, expected ${expected[37].toPrecision(7)}`);
  });

  it('fails on maxAbs even when relL2 passes', () => {
    const big = Float32Array.from({ length: 10000 }, (_, i) => 1 + (i % 7));
    const actual = Float32Array.from(big);
    actual[5] += 1e-3; // relL2 ~ 2e-6, maxAbs 1e-3
    expect(() => expectClose(actual, big, { relL2: 1e-5 })).not.toThrow();
    expect(() => expectClose(actual, big, { relL2: 1e-5, maxAbs: 1e-4 })).toThrow(/maxAbs = .*tolerance 1\.000e-4\) +FAIL/);
  });

  it('fails on a single NaN, whatever the tolerance, and counts NaNs', () => {
    const actual = Float32Array.from(expected);
    actual[3] = NaN;
    expect(() => expectClose(actual, expected, { relL2: 1e9 })).toThrow(/worst index 3: actual NaN[\s\S]*NaN count: actual 1, expected 0/);
  });

  it('fails on size mismatch', () => {
    expect(() => expectClose([1, 2, 3], [1, 2], { relL2: 1, label: 'x' })).toThrow(/x: size mismatch: actual has 3 values, expected 2/);
  });

  it('rejects a missing or invalid tolerance', () => {
    expect(() => expectClose([1], [1], { relL2: NaN })).toThrow(/opts.relL2/);
    expect(() => expectClose([1], [1], {} as { relL2: number })).toThrow(/opts.relL2/);
    expect(() => expectClose([1], [1], { relL2: 0, maxAbs: -1 })).toThrow(/opts.maxAbs/);
  });

  it('reads tensors through dataSync without disposing them, and reports the multi-index', () => {
    let reads = 0;
    let disposed = false;
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t: TensorLike & { dispose(): void } = {
      shape: [2, 3],
      dataSync: () => { reads++; return data; },
      dispose: () => { disposed = true; },
    };
    expectClose(t, [1, 2, 3, 4, 5, 6], { relL2: 0 });
    expect(reads).toBe(1);
    expect(disposed).toBe(false);
    expect(() => expectClose(t, [1, 2, 3, 4, 5, 7], { relL2: 1e-3, label: 'tensor' }))
      .toThrow(/tensor: not close \(n = 6, shape \[2, 3\]\)[\s\S]*worst index 5 = \[1, 2\]: actual 6\.000000, expected 7\.000000/);
  });
});
