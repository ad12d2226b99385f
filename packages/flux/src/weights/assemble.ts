/**
 * The host stage of the weight executor (weights/executor.ts): raw checkpoint bytes (any float dtype) decoded
 * straight into the float32 layout the model computes with, in one pass and one output buffer:
 *   - the rows of several checkpoint tensors concatenated, or the two row halves of one swapped (a rule's row op,
 *     weights/layout.ts);
 *   - a Linear weight ([out, in] in the checkpoint) transposed to [in, out], so `x W` is a plain matMul.
 * Streamed weights go through this for every block of every step (12B values per step at full size), so it runs on
 * the host with no device ops (`pnpm bench stream` measures it; README, Performance). The values are exactly those of
 * decoding, concatenating and transposing separately (pure data movement; fp8 scales apply as `fround(x * scale)`).
 */
import { DTYPE_SIZES, f16LookupTable, f8e4m3LookupTable, f8e5m2LookupTable, toFloat32, type Dtype } from './dtypes.ts';

/** One checkpoint tensor as stored: its dtype, shape and raw little-endian bytes; `scale` for ComfyUI scaled fp8. */
export interface RawTensor {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
  readonly scale?: number;
}

/** How the parts become one tensor: `rename` (one part), `concat` (rows in order), `swap_halves` (one part). */
export type AssembleOp = 'rename' | 'concat' | 'swap_halves';

export interface Assembled {
  readonly data: Float32Array;
  /** [in, out] when transposed, else the concatenated checkpoint shape. */
  readonly shape: number[];
}

/** Source rows [from, to) of one part land at destination row `at`. */
interface Segment {
  readonly part: number;
  readonly from: number;
  readonly to: number;
  readonly at: number;
}

/** Rows per cache block of the transpose (64 x 64 float32 = 16 KB per side). */
const BLOCK = 64;

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function segmentsOf(parts: readonly RawTensor[], op: AssembleOp): { rows: number; segments: Segment[] } {
  if (parts.length === 0) throw new RangeError('assemble: no parts');
  const rest = parts[0]!.shape.slice(1).join(',');
  for (const p of parts) {
    if (p.shape.length === 0) throw new RangeError('assemble: scalar parts have no rows');
    if (p.shape.slice(1).join(',') !== rest) throw new RangeError(`assemble: parts differ beyond dim 0 (${parts.map((q) => `[${q.shape.join(', ')}]`).join(', ')})`);
  }
  if (op !== 'concat' && parts.length !== 1) throw new RangeError(`assemble: ${op} takes one part, got ${parts.length}`);
  if (op === 'swap_halves') {
    const rows = parts[0]!.shape[0]!;
    if (rows % 2 !== 0) throw new RangeError(`assemble: cannot swap the halves of ${rows} rows`);
    const h = rows / 2;
    return { rows, segments: [{ part: 0, from: 0, to: h, at: h }, { part: 0, from: h, to: rows, at: 0 }] };
  }
  const segments: Segment[] = [];
  let at = 0;
  parts.forEach((p, i) => {
    segments.push({ part: i, from: 0, to: p.shape[0]!, at });
    at += p.shape[0]!;
  });
  return { rows: at, segments };
}

type Bits =
  | { kind: 'u32'; src: Uint32Array } // float32 bit patterns
  | { kind: 'bf16'; src: Uint16Array }
  | { kind: 'table16'; src: Uint16Array; table: Uint32Array }
  | { kind: 'table8'; src: Uint8Array; table: Uint32Array };

function view<T>(bytes: Uint8Array, size: number, make: (b: ArrayBufferLike, o: number, n: number) => T): T {
  if (bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
  const copy = bytes.slice();
  return make(copy.buffer, 0, copy.byteLength / size);
}

/** The part as something whose element i gives float32 bits in one step (scaled and other dtypes decode first). */
function bitsOf(p: RawTensor): Bits {
  if (p.scale === undefined) {
    switch (p.dtype) {
      case 'F32':
        return { kind: 'u32', src: view(p.bytes, 4, (b, o, n) => new Uint32Array(b, o, n)) };
      case 'BF16':
        return { kind: 'bf16', src: view(p.bytes, 2, (b, o, n) => new Uint16Array(b, o, n)) };
      case 'F16':
        return { kind: 'table16', src: view(p.bytes, 2, (b, o, n) => new Uint16Array(b, o, n)), table: new Uint32Array(f16LookupTable().buffer) };
      case 'F8_E4M3':
      case 'F8_E5M2': {
        const t = p.dtype === 'F8_E4M3' ? f8e4m3LookupTable() : f8e5m2LookupTable();
        return { kind: 'table8', src: p.bytes, table: new Uint32Array(t.buffer, t.byteOffset, t.length) };
      }
      default:
        break;
    }
  }
  const f = decode(p);
  return { kind: 'u32', src: new Uint32Array(f.buffer, f.byteOffset, f.length) };
}

/** The whole part as float32 (scale applied). */
function decode(p: RawTensor, out?: Float32Array): Float32Array {
  const f = toFloat32(p.dtype, p.bytes, out);
  if (p.scale !== undefined) {
    const s = p.scale;
    for (let i = 0; i < f.length; i++) f[i] = Math.fround(f[i]! * s);
  }
  return f;
}

/**
 * dst[c * stride + at + (r - from)] = bits(src[r * cols + c]) for rows [from, to), in 64 x 64 blocks with the
 * writes innermost and contiguous (faster in V8 than strided writes).
 */
function transposeSegment(b: Bits, cols: number, from: number, to: number, dst: Uint32Array, stride: number, at: number): void {
  for (let r0 = from; r0 < to; r0 += BLOCK) {
    const r1 = Math.min(to, r0 + BLOCK);
    for (let c0 = 0; c0 < cols; c0 += BLOCK) {
      const c1 = Math.min(cols, c0 + BLOCK);
      for (let c = c0; c < c1; c++) {
        const d = c * stride + at - from;
        switch (b.kind) {
          case 'bf16': {
            const s = b.src;
            for (let r = r0, so = r0 * cols + c; r < r1; r++, so += cols) dst[d + r] = s[so]! << 16;
            break;
          }
          case 'u32': {
            const s = b.src;
            for (let r = r0, so = r0 * cols + c; r < r1; r++, so += cols) dst[d + r] = s[so]!;
            break;
          }
          case 'table16': {
            const s = b.src;
            const t = b.table;
            for (let r = r0, so = r0 * cols + c; r < r1; r++, so += cols) dst[d + r] = t[s[so]!]!;
            break;
          }
          case 'table8': {
            const s = b.src;
            const t = b.table;
            for (let r = r0, so = r0 * cols + c; r < r1; r++, so += cols) dst[d + r] = t[s[so]!]!;
            break;
          }
        }
      }
    }
  }
}

/**
 * The parts, combined by `op` (rows), as one float32 tensor; `transpose` (2-D parts only) gives [in, out] =
 * [cols, rows]. Throws RangeError on parts that cannot combine (callers check keys and shapes first).
 * `scratch`, when large enough, receives the values (`data` is then a view of it: a caller that copies the values
 * out before the next call saves allocating, and page-faulting, a fresh buffer per tensor).
 */
export function assemble(parts: readonly RawTensor[], op: AssembleOp, transpose: boolean, scratch?: Float32Array): Assembled {
  const { rows, segments } = segmentsOf(parts, op);
  const rest = parts[0]!.shape.slice(1);
  const rowLen = numel(rest);
  for (const p of parts) {
    const want = numel(p.shape) * DTYPE_SIZES[p.dtype];
    if (p.bytes.byteLength !== want) throw new RangeError(`assemble: a [${p.shape.join(', ')}] ${p.dtype} part has ${p.bytes.byteLength} bytes`);
  }
  const n = rows * rowLen;
  const data = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float32Array(n);
  if (transpose) {
    if (rest.length !== 1) throw new RangeError(`assemble: only 2-D weights transpose, got [${parts[0]!.shape.join(', ')}]`);
    const cols = rest[0]!;
    const dst = new Uint32Array(data.buffer, data.byteOffset, n);
    const bits = parts.map(bitsOf);
    for (const s of segments) transposeSegment(bits[s.part]!, cols, s.from, s.to, dst, rows, s.at);
    return { data, shape: [cols, rows] };
  }
  for (const s of segments) {
    const p = parts[s.part]!;
    const size = p.bytes.byteLength / numel(p.shape);
    const sub: RawTensor = { ...p, bytes: p.bytes.subarray(s.from * rowLen * size, s.to * rowLen * size) };
    decode(sub, data.subarray(s.at * rowLen, (s.at + s.to - s.from) * rowLen));
  }
  return { data, shape: [rows, ...rest] };
}
