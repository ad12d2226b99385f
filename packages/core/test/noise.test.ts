import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// Fixture reading only (test code): core itself knows nothing about files.
import { loadSafetensors, type LoadedTensor } from '../../flux/src/weights/safetensors.ts';
import { MT19937 } from '../src/mt19937.ts';
import { fmaExact, fmaf } from '../src/noise-math.ts';
import {
  normalizeSeed, parseShape, randn, SEED_MAX, SEED_MIN, TorchGenerator,
  type NoiseDtype, type NormalKernel,
} from '../src/noise.ts';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/noise/', import.meta.url));

interface Draw { op: 'randn' | 'rand'; shape: number[]; dtype: NoiseDtype; tensor: string }
interface Case { name: string; kernel: NormalKernel; seed: string; initial_seed: string; draws: Draw[] }
const { cases, torch } = JSON.parse(readFileSync(FIXTURES + 'cases.json', 'utf8')) as { cases: Case[]; torch: string };
const tensors: Record<string, LoadedTensor> = await loadSafetensors(FIXTURES + 'noise.safetensors');

/** Distance in units in the last place between two float32 values (0 for identical bits). */
function ulpDiff(a: Float32Array, b: Float32Array): { maxUlp: number; identical: number } {
  const ia = new Int32Array(a.buffer, a.byteOffset, a.length);
  const ib = new Int32Array(b.buffer, b.byteOffset, b.length);
  const ordered = (x: number): number => (x < 0 ? -(x & 0x7fffffff) : x); // monotone in the float value
  let maxUlp = 0;
  let identical = 0;
  for (let i = 0; i < ia.length; i++) {
    const d = Math.abs(ordered(ia[i]!) - ordered(ib[i]!));
    if (d === 0) identical++;
    if (d > maxUlp) maxUlp = d;
  }
  return { maxUlp, identical };
}

function runCase(c: Case): Array<{ draw: Draw; actual: Float32Array; expected: Float32Array }> {
  const g = new TorchGenerator(BigInt(c.seed), { kernel: c.kernel });
  expect(g.initialSeed()).toBe(BigInt(c.initial_seed));
  return c.draws.map((draw) => {
    const actual = draw.op === 'randn' ? g.randn(draw.shape, { dtype: draw.dtype }) : g.rand(draw.shape);
    const t = tensors[draw.tensor]!;
    expect(t.shape).toEqual(draw.shape);
    return { draw, actual, expected: t.data as Float32Array };
  });
}

describe(`TorchGenerator vs torch ${torch} (fixtures from test/reference/gen_noise.py)`, () => {
  const avx2 = cases.filter((c) => c.kernel === 'avx2');
  const scalar = cases.filter((c) => c.kernel === 'scalar');
  it('has fixtures for both kernels', () => {
    expect(avx2.length).toBeGreaterThan(40);
    expect(scalar.length).toBeGreaterThan(0);
  });


  // Both kernels are reproduced exactly; the summary line records the bit-identical fraction.
  const summary = { avx2: { n: 0, same: 0, worst: 0 }, scalar: { n: 0, same: 0, worst: 0 } };
  for (const c of cases) {
    it(`${c.kernel} kernel: ${c.name} (seed ${c.seed}, ${c.draws.length} draw(s))`, () => {
      for (const { draw, actual, expected } of runCase(c)) {
        expect(actual.length).toBe(expected.length);
        const { maxUlp, identical } = ulpDiff(actual, expected);
        const s = summary[c.kernel];
        s.n += expected.length;
        s.same += identical;
        s.worst = Math.max(s.worst, maxUlp);
        expect(maxUlp, `${draw.tensor}: max ulp difference`).toBeLessThanOrEqual(2);
        expect({ tensor: draw.tensor, identical }).toEqual({ tensor: draw.tensor, identical: expected.length });
      }
    });
  }

  it('summary: bit-identical fraction per kernel', () => {
    for (const [kernel, s] of Object.entries(summary)) {
      console.log(`${kernel} kernel: ${s.same}/${s.n} elements bit-identical (${((100 * s.same) / s.n).toFixed(4)}%), max ${s.worst} ulp`);
      expect(s.n).toBeGreaterThan(0);
      expect(s.same).toBe(s.n);
    }
  });

  it('randn(shape, seed) is a fresh generator draw', () => {
    const c = avx2.find((x) => x.name === 'flux_1x16x64x64_s42')!;
    expect(ulpDiff(randn([1, 16, 64, 64], 42), tensors[c.draws[0]!.tensor]!.data as Float32Array).maxUlp).toBe(0);
  });
});

describe('MT19937', () => {
  it('matches the reference sequence (seed 5489: first 3499211612, 10000th 4123659995)', () => {
    const mt = new MT19937(5489);
    expect(mt.nextUint32()).toBe(3499211612);
    const rest = new Uint32Array(9998);
    mt.fillUint32(rest);
    expect(mt.nextUint32()).toBe(4123659995);
  });
});

describe('seeds and shapes', () => {
  it('normalizes seeds the way torch.Generator.manual_seed does', () => {
    expect(normalizeSeed(42)).toBe(42n);
    expect(normalizeSeed('0x10')).toBe(16n);
    expect(normalizeSeed(-1)).toBe(SEED_MAX);
    expect(normalizeSeed(SEED_MIN)).toBe(2n ** 63n);
    expect(normalizeSeed('18446744073709551615')).toBe(SEED_MAX);
    expect(() => normalizeSeed(2n ** 64n)).toThrow(/out of range.*-9223372036854775808 to 18446744073709551615/);
    expect(() => normalizeSeed(1.5)).toThrow(/not an integer/);
    expect(() => normalizeSeed('abc')).toThrow(/not an integer/);
  });

  it('reseeding forgets the cached normal', () => {
    const g = new TorchGenerator(7);
    const first = g.randn([1]);
    g.randn([1]);
    g.manualSeed(7);
    expect(g.randn([1])).toEqual(first);
  });

  it('parses shapes and rejects bad ones', () => {
    expect(parseShape('1,16,64,64')).toEqual([1, 16, 64, 64]);
    expect(parseShape('[2, 16, 8, 8]')).toEqual([2, 16, 8, 8]);
    expect(parseShape('1x16x8x8')).toEqual([1, 16, 8, 8]);
    expect(() => parseShape('1,-16')).toThrow(/non-negative integers/);
    expect(() => parseShape('')).toThrow(/invalid/);
    expect(() => new TorchGenerator(0).randn([2.5])).toThrow(/non-negative integer/);
    expect(new TorchGenerator(0).randn([0]).length).toBe(0);
  });

  it('fmaf rounds once (exact product, midpoint ties settled by the exact sum)', () => {
    // 1 + 2^-24 is a float32 midpoint; the tiny c decides the direction.
    expect(fmaf(1, 1, 2 ** -24 + 2 ** -70)).toBe(Math.fround(1 + 2 ** -23));
    expect(fmaf(1 + 2 ** -23, 1 - 2 ** -23, 0)).toBe(1); // 1 - 2^-46 rounds to 1
    expect(fmaf(3, 5, -1)).toBe(14);
  });

  it('fmaExact is the correctly rounded a*b + c in double', () => {
    // (1 + 2^-52)(1 - 2^-52) = 1 - 2^-104: plain a*b + c loses the 2^-104 term
    expect(fmaExact(1 + 2 ** -52, 1 - 2 ** -52, -1)).toBe(-(2 ** -104));
    expect((1 + 2 ** -52) * (1 - 2 ** -52) - 1).toBe(0);
    expect(fmaExact(0.1, 10, -1)).toBe(2 ** -54); // 0.1 (double) * 10 = 1 + 2^-54 exactly
    expect(fmaExact(-2, 3, 1)).toBe(-5);
  });
});
