/**
 * The float32 math torch's CPU Box-Muller uses, reproduced bit for bit (see noise.ts):
 *  - avx_mathfun.h `log256_ps` / `sincos256_ps` (Cephes polynomials in float32), one lane at a time,
 *    with the multiply-adds GCC contracts into FMA (-mfma, -ffp-contract=fast) done as `fmaf`;
 *  - glibc's `logf`, `sinf`, `cosf` (2.28 and later: table + double polynomial, from ARM's
 *    optimized-routines), again with GCC's FMA contractions (x86-64 FMA ifunc variants, aarch64).
 *    The double math runs unfused first; only when the result lies so close to a float32 rounding
 *    boundary that the fused/unfused difference could matter is it recomputed with an exact FMA.
 */

const f = Math.fround;

/**
 * float32 fused multiply-add, correctly rounded: a*b is exact in a double (24 + 24 bits); the sum is
 * rounded once to double, which only misleads `fround` when it lands exactly on a float32 midpoint,
 * so that case is settled by the exact error of the double sum (TwoSum).
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f(s);
  if (r === s) return r;
  const other = 2 * s - r;
  if (f(other) !== other) return r; // s is not a midpoint: fround(s) is the right answer
  const bp = s - c;
  const err = (p - bp) + (c - (s - bp));
  if (err === 0) return r;
  return (err > 0) === (other > r) ? other : r;
}

const dv = new DataView(new ArrayBuffer(8));
/** x (finite double) as [integer mantissa, exponent]: x = m * 2^e exactly. */
function decompose(x: number): [bigint, number] {
  dv.setFloat64(0, x);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased !== 0) m |= 1n << 52n;
  if (hi >>> 31) m = -m;
  return [m, (biased === 0 ? 1 : biased) - 1075];
}

/** Exact double fused multiply-add (slow, BigInt): only used near float32 rounding boundaries. */
export function fmaExact(a: number, b: number, c: number): number {
  if (a === 0 || b === 0 || c === 0 || !Number.isFinite(a * b) || !Number.isFinite(c)) return a * b + c;
  const [ma, ea] = decompose(a);
  const [mb, eb] = decompose(b);
  const [mc, ec] = decompose(c);
  const ep = ea + eb;
  const e = Math.min(ep, ec);
  const sum = ((ma * mb) << BigInt(ep - e)) + (mc << BigInt(ec - e));
  if (sum === 0n) return 0;
  // Round the integer to 53 bits first (Number(bigint) rounds to nearest even), then scale exactly.
  const neg = sum < 0n;
  let mag = neg ? -sum : sum;
  let shift = e;
  const bits = mag.toString(2).length;
  if (bits > 60) { // keep 60 bits + sticky so Number() sees the same rounding decision
    const drop = BigInt(bits - 60);
    const sticky = (mag & ((1n << drop) - 1n)) !== 0n ? 1n : 0n;
    mag = (mag >> drop) | sticky;
    shift += bits - 60;
  }
  let v = Number(mag);
  while (shift > 0) { const k = Math.min(shift, 1000); v *= 2 ** k; shift -= k; }
  while (shift < 0) { const k = Math.min(-shift, 1000); v *= 2 ** -k; shift += k; }
  return neg ? -v : v;
}

type Fma = (a: number, b: number, c: number) => number;
const fmaPlain: Fma = (a, b, c) => a * b + c;

/** float32 rounding of a double result whose fused evaluation may differ by a few double ulps. */
function roundSafely(compute: (fma: Fma) => number): number {
  const y = compute(fmaPlain);
  const lo = f(y * (1 - 2 ** -40));
  if (lo === f(y * (1 + 2 ** -40))) return lo;
  return f(compute(fmaExact));
}

// ---------------------------------------------------------------- avx_mathfun.h (float32)
const SQRTHF = f(0.707106781186547524);
const LOG_P = [7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1,
  -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1].map(f);
const LOG_Q1 = f(-2.1219444e-4);
const LOG_Q2 = f(0.693359375);
const DP1 = f(-0.78515625);
const DP2 = f(-2.4187564849853515625e-4);
const DP3 = f(-3.77489497744594108e-8);
const SINCOF_P0 = f(-1.9515295891e-4);
const SINCOF_P1 = f(8.3321608736e-3);
const SINCOF_P2 = f(-1.6666654611e-1);
const COSCOF_P0 = f(2.443315711809948e-5);
const COSCOF_P1 = f(-1.388731625493765e-3);
const COSCOF_P2 = f(4.166664568298827e-2);
const FOPI = f(1.27323954473516);

const bitsF32 = new Float32Array(1);
const bitsI32 = new Int32Array(bitsF32.buffer);

/** avx_mathfun `log256_ps` for one lane, x a normal float in (0, 1]. */
export function logAvx(x0: number): number {
  bitsF32[0] = x0;
  const bits = bitsI32[0]!;
  let e = (bits >>> 23) - 0x7f + 1; // exponent (small integer: exact as float)
  bitsI32[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa with the exponent of 0.5: [0.5, 1)
  let x = bitsF32[0]!;
  if (x < SQRTHF) {
    e -= 1;
    x = f(f(x - 1) + x);
  } else {
    x = f(x - 1);
  }
  const z = f(x * x);
  let y = LOG_P[0]!;
  for (let k = 1; k < 9; k++) y = fmaf(y, x, LOG_P[k]!); // y*x + p: fused by GCC
  y = f(y * x);
  y = fmaf(y, z, f(e * LOG_Q1));
  y = f(y - f(z * 0.5));
  x = f(x + y);
  return f(x + f(e * LOG_Q2));
}

/** avx_mathfun `sincos256_ps` for one lane, x >= 0; writes [sin, cos] into `out`. */
export function sincosAvx(x0: number, out: Float64Array): void {
  let x = x0;
  let j = f(x * FOPI) | 0;
  j = (j + 1) & ~1;
  const y0 = j;
  const sinNeg = (j & 4) !== 0;
  const polySin = (j & 2) === 0; // sin from the sine polynomial, cos from the cosine one
  const cosNeg = (~(j - 2) & 4) !== 0;
  x = fmaf(y0, DP1, x);
  x = fmaf(y0, DP2, x);
  x = fmaf(y0, DP3, x);
  const z = f(x * x);
  let y = fmaf(COSCOF_P0, z, COSCOF_P1);
  y = fmaf(y, z, COSCOF_P2);
  y = f(y * z);
  y = fmaf(y, z, -f(z * 0.5));
  y = f(y + 1);
  let y2 = fmaf(SINCOF_P0, z, SINCOF_P1);
  y2 = fmaf(y2, z, SINCOF_P2);
  y2 = f(y2 * z);
  y2 = fmaf(y2, x, x);
  // (ysin1 + ysin2) and (y + y2) with one of each pair zeroed: adding +0 turns -0 into +0.
  const s = (polySin ? y2 : y) + 0;
  const c = (polySin ? y : y2) + 0;
  out[0] = sinNeg ? -s : s;
  out[1] = cosNeg ? -c : c;
}

// ---------------------------------------------------------------- glibc logf / sinf / cosf
// Data: glibc sysdeps/ieee754/flt-32/e_logf_data.c and s_sincosf_data.c (ARM optimized-routines).
const LOGF_TAB: ReadonlyArray<readonly [number, number]> = [
  ['0x1.661ec79f8f3bep+0', '-0x1.57bf7808caadep-2'], ['0x1.571ed4aaf883dp+0', '-0x1.2bef0a7c06ddbp-2'],
  ['0x1.49539f0f010bp+0', '-0x1.01eae7f513a67p-2'], ['0x1.3c995b0b80385p+0', '-0x1.b31d8a68224e9p-3'],
  ['0x1.30d190c8864a5p+0', '-0x1.6574f0ac07758p-3'], ['0x1.25e227b0b8eap+0', '-0x1.1aa2bc79c81p-3'],
  ['0x1.1bb4a4a1a343fp+0', '-0x1.a4e76ce8c0e5ep-4'], ['0x1.12358f08ae5bap+0', '-0x1.1973c5a611cccp-4'],
  ['0x1.0953f419900a7p+0', '-0x1.252f438e10c1ep-5'], ['0x1p+0', 0],
  ['0x1.e608cfd9a47acp-1', '0x1.aa5aa5df25984p-5'], ['0x1.ca4b31f026aap-1', '0x1.c5e53aa362eb4p-4'],
  ['0x1.b2036576afce6p-1', '0x1.526e57720db08p-3'], ['0x1.9c2d163a1aa2dp-1', '0x1.bc2860d22477p-3'],
  ['0x1.886e6037841edp-1', '0x1.1058bc8a07ee1p-2'], ['0x1.767dcf5534862p-1', '0x1.4043057b6ee09p-2'],
].map(([a, b]) => [hex(a), hex(b)] as const);
const LOGF_LN2 = hex('0x1.62e42fefa39efp-1');
const LOGF_A = [hex('-0x1.00ea348b88334p-2'), hex('0x1.5575b0be00b6ap-2'), hex('-0x1.ffffef20a4123p-2')] as const;

/** glibc `logf` for a positive normal float x. */
export function glibcLogf(x: number): number {
  bitsF32[0] = x;
  const ix = bitsI32[0]! >>> 0;
  if (ix === 0x3f800000) return 0;
  const tmp = (ix - 0x3f330000) >>> 0;
  const i = (tmp >>> 19) % 16;
  const k = (tmp | 0) >> 23;
  bitsI32[0] = (ix - (tmp & (0x1ff << 23))) | 0;
  const z = bitsF32[0]!;
  const [invc, logc] = LOGF_TAB[i]!;
  return roundSafely((fma) => {
    const r = fma(z, invc!, -1);
    const y0 = fma(k, LOGF_LN2, logc!);
    const r2 = r * r;
    let y = fma(LOGF_A[1], r, LOGF_A[2]);
    y = fma(LOGF_A[0], r2, y);
    return fma(y, r2, y0 + r);
  });
}

interface SincosTable { sign: readonly number[]; c: readonly number[]; s: readonly number[] }
const SINCOS_C = [1, hex('-0x1.ffffffd0c621cp-2'), hex('0x1.55553e1068f19p-5'), hex('-0x1.6c087e89a359dp-10'), hex('0x1.99343027bf8c3p-16')];
const SINCOS_S = [hex('-0x1.555545995a603p-3'), hex('0x1.1107605230bc4p-7'), hex('-0x1.994eb3774cf24p-13')];
const SINCOS_TABLE: readonly [SincosTable, SincosTable] = [
  { sign: [1, -1, -1, 1], c: SINCOS_C, s: SINCOS_S },
  { sign: [1, -1, -1, 1], c: SINCOS_C.map((v) => -v), s: SINCOS_S }, // computes -cos
];
const HPI_INV = hex('0x1.45f306dc9c883p+23'); // 2/pi * 2^24 (x86-64: no TOINT_INTRINSICS)
const HPI = hex('0x1.921fb54442d18p0');
/** n * HPI as hi + lo exactly (n = 0..4), so that x - n*HPI rounds once, as the fused code does. */
const N_HPI = [0, 1, 2, 3, 4].map((n) => {
  const hi = n * HPI;
  return [hi, fmaExact(n, HPI, -hi)] as const;
});

function sinfPoly(x: number, x2: number, p: SincosTable, n: number): number {
  if ((n & 1) === 0) {
    const x3 = x * x2;
    const x7 = x3 * x2;
    return roundSafely((fma) => {
      const s1 = fma(x2, p.s[2]!, p.s[1]!);
      const s = fma(x3, p.s[0]!, x);
      return fma(x7, s1, s);
    });
  }
  const x4 = x2 * x2;
  const x6 = x4 * x2;
  return roundSafely((fma) => {
    const c2 = fma(x2, p.c[4]!, p.c[3]!);
    const c1 = fma(x2, p.c[1]!, p.c[0]!);
    const c = fma(x4, p.c[2]!, c1);
    return fma(x6, c2, c);
  });
}

/** glibc `sinf` (which = 0) or `cosf` (which = 1) for 0 <= y < 120. */
function glibcSinCosf(y: number, which: 0 | 1): number {
  bitsF32[0] = y;
  const top = (bitsI32[0]! >>> 20) & 0x7ff;
  if (top < 0x3f4) { // |y| < pi/4 by the top 12 bits: 0.75
    if (top < 0x398) return which === 0 ? y : 1; // |y| < 2^-12
    return sinfPoly(y, y * y, SINCOS_TABLE[0], which);
  }
  const n = (((y * HPI_INV) | 0) + 0x800000) >> 24;
  const [hi, lo] = N_HPI[n]!;
  const x = (y - hi) - lo; // y - hi is exact (Sterbenz); one rounding, as fma(-n, HPI, y)
  const s = SINCOS_TABLE[0].sign[n & 3]!;
  const p = SINCOS_TABLE[(n & 2) >> 1]!;
  return sinfPoly(x * s, x * x, p, n ^ which);
}

export const glibcSinf = (y: number): number => glibcSinCosf(y, 0);
export const glibcCosf = (y: number): number => glibcSinCosf(y, 1);

/** A C hex float literal ('-0x1.8p-3'), parsed exactly (at most 53 significant bits). */
function hex(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^(-?)0x([0-9a-f]+)(?:\.([0-9a-f]*))?p([+-]?\d+)$/i.exec(v);
  if (!m) throw new Error(`bad hex float ${v}`);
  const frac = m[3] ?? '';
  const mant = parseInt(m[2]! + frac, 16); // <= 2^53: exact
  const val = mant * 2 ** (Number(m[4]) - 4 * frac.length);
  return m[1] ? -val : val;
}
