/**
 * Tensor comparison for parity tests: actual (ours) vs expected (a fixture from the Python reference).
 *
 * Metrics, computed in float64:
 * - `maxAbs`: max |a_i - e_i|.
 * - `relL2`: ||a - e||_2 / ||e||_2. When ||e|| = 0 it is 0 if a equals e exactly, else Infinity (any
 *   difference from an all-zero expectation is unbounded relative error; bound such cases with `maxAbs`).
 * - `worstIndex`: the flat index of the largest |a_i - e_i| (-1 when n = 0).
 *
 * Non-finite values: an index where both sides hold the same non-finite value (NaN and NaN, +Inf and +Inf)
 * agrees and is left out of the norms; any other disagreement involving NaN or ±Inf (e.g. NaN in actual
 * where expected is finite) makes `maxAbs` and `relL2` Infinity and is reported as the worst index.
 *
 * tfjs tensors are accepted structurally (anything with `dataSync()` and `shape`), so this file needs no
 * tfjs import; the caller's tensor is read, never disposed.
 */

export interface Comparison {
  maxAbs: number;
  relL2: number;
  worstIndex: number;
  n: number;
}

/** What expectClose needs from a tf.Tensor. */
export interface TensorLike {
  readonly shape: readonly number[];
  dataSync(): ArrayLike<number> | ArrayLike<string> | ArrayLike<Uint8Array>;
}

export interface CloseOptions {
  /** Largest allowed relative L2 error (required: state the tolerance in every test). */
  relL2: number;
  /** Also require max |a - e| <= maxAbs. */
  maxAbs?: number;
  /** Names the comparison in the failure report. */
  label?: string;
}

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === 'object' && x !== null && typeof (x as { dataSync?: unknown }).dataSync === 'function'
    && Array.isArray((x as { shape?: unknown }).shape);
}

function readValues(x: ArrayLike<number> | TensorLike, side: string): { values: ArrayLike<number>; shape?: readonly number[] } {
  if (!isTensorLike(x)) return { values: x };
  const data = x.dataSync();
  if (data.length > 0 && typeof data[0] !== 'number') {
    throw new Error(`compare: ${side} is a non-numeric tensor (dtype string); compare numeric tensors only`);
  }
  return { values: data as ArrayLike<number>, shape: x.shape };
}

export function compareArrays(actual: ArrayLike<number>, expected: ArrayLike<number>): Comparison {
  const n = expected.length;
  if (actual.length !== n) {
    throw new Error(`compareArrays: length mismatch: actual has ${actual.length} values, expected has ${n}`);
  }
  let sumDiff2 = 0;
  let sumExp2 = 0;
  let maxAbs = 0;
  let worstIndex = n > 0 ? 0 : -1;
  let nonFiniteMismatch = -1;
  for (let i = 0; i < n; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    if (!Number.isFinite(a) || !Number.isFinite(e)) {
      const agree = (Number.isNaN(a) && Number.isNaN(e)) || a === e;
      if (!agree && nonFiniteMismatch < 0) nonFiniteMismatch = i;
      continue;
    }
    const d = a - e;
    const ad = Math.abs(d);
    sumDiff2 += d * d;
    sumExp2 += e * e;
    if (ad > maxAbs) {
      maxAbs = ad;
      worstIndex = i;
    }
  }
  if (nonFiniteMismatch >= 0) {
    return { maxAbs: Infinity, relL2: Infinity, worstIndex: nonFiniteMismatch, n };
  }
  let relL2: number;
  if (sumExp2 > 0) relL2 = Math.sqrt(sumDiff2) / Math.sqrt(sumExp2);
  else relL2 = sumDiff2 === 0 ? 0 : Infinity;
  return { maxAbs, relL2, worstIndex, n };
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const ax = Math.abs(x);
  return ax >= 1e-3 && ax < 1e5 ? x.toPrecision(7) : x.toExponential(3);
}

function multiIndex(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  let r = flat;
  for (let d = shape.length - 1; d >= 0; d--) {
    const s = shape[d];
    idx[d] = s > 0 ? r % s : 0;
    r = s > 0 ? Math.floor(r / s) : 0;
  }
  return idx;
}

function countNaN(v: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < v.length; i++) if (Number.isNaN(v[i])) c++;
  return c;
}

/**
 * Throws an Error with a readable report when relL2 > opts.relL2, or max |a - e| > opts.maxAbs
 * (when given), or any non-finite disagreement (see compareArrays). `actual` may be a tf.Tensor.
 */
export function expectClose(
  actual: ArrayLike<number> | TensorLike,
  expected: ArrayLike<number> | TensorLike,
  opts: CloseOptions,
): void {
  if (typeof opts?.relL2 !== 'number' || !(opts.relL2 >= 0)) {
    throw new Error(`expectClose: opts.relL2 must be a number >= 0 (got ${String(opts?.relL2)})`);
  }
  if (opts.maxAbs !== undefined && !(opts.maxAbs >= 0)) {
    throw new Error(`expectClose: opts.maxAbs must be a number >= 0 (got ${String(opts.maxAbs)})`);
  }
  const label = opts.label ?? 'values';
  const a = readValues(actual, 'actual');
  const e = readValues(expected, 'expected');
  if (a.values.length !== e.values.length) {
    const sa = a.shape ? ` (shape [${a.shape.join(', ')}])` : '';
    const se = e.shape ? ` (shape [${e.shape.join(', ')}])` : '';
    throw new Error(`${label}: size mismatch: actual has ${a.values.length} values${sa}, expected ${e.values.length}${se}`);
  }
  const c = compareArrays(a.values, e.values);
  const relFail = !(c.relL2 <= opts.relL2);
  const absFail = opts.maxAbs !== undefined && !(c.maxAbs <= opts.maxAbs);
  if (!relFail && !absFail) return;

  const shape = a.shape ?? e.shape;
  const where = shape && shape.length > 0 ? ` = [${multiIndex(c.worstIndex, shape).join(', ')}]` : '';
  const nanA = countNaN(a.values);
  const nanE = countNaN(e.values);
  const lines = [
    `${label}: not close (n = ${c.n}${shape ? `, shape [${shape.join(', ')}]` : ''})`,
    `  relL2  = ${fmt(c.relL2)}  (tolerance ${fmt(opts.relL2)})${relFail ? '  FAIL' : ''}`,
    `  maxAbs = ${fmt(c.maxAbs)}${opts.maxAbs !== undefined ? `  (tolerance ${fmt(opts.maxAbs)})${absFail ? '  FAIL' : ''}` : ''}`,
    `  worst index ${c.worstIndex}${where}: actual ${fmt(Number(a.values[c.worstIndex]))}, expected ${fmt(Number(e.values[c.worstIndex]))}`,
  ];
  if (nanA > 0 || nanE > 0) lines.push(`  NaN count: actual ${nanA}, expected ${nanE}`);
  const k = Math.min(6, c.n);
  const head = (v: ArrayLike<number>) => Array.from({ length: k }, (_, i) => fmt(Number(v[i]))).join(', ');
  lines.push(`  first ${k}: actual [${head(a.values)}], expected [${head(e.values)}]`);
  throw new Error(lines.join('\n'));
}
