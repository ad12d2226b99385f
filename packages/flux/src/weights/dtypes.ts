/**
 * Safetensors dtypes and their conversion to float32 / native typed arrays.
 * Formulas: shared/spec/flux-reference-facts.md §7. 8- and 16-bit float formats go through lookup
 * tables built once (exact: every F16 / F8 value is representable in float32); BF16 is a 16-bit shift.
 * All typed-array views assume a little-endian host (checked once below), matching the file format.
 */

export type Dtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

/** Bytes per element. Key order is the reference's `Dtype` enum order (increasing alignment). */
export const DTYPE_SIZES: Readonly<Record<Dtype, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
});

export const DTYPES: readonly Dtype[] = Object.freeze(Object.keys(DTYPE_SIZES) as Dtype[]);

/**
 * Rank of each dtype in the reference Rust enum (safetensors/src/tensor.rs `enum Dtype`, which also
 * has F4, F6_*, F8_E8M0, C64 that we do not support). The reference writer sorts tensors by this rank,
 * descending, then by name; `encodeSafetensors` does the same so its files are byte-identical.
 */
export const DTYPE_RANK: Readonly<Record<Dtype, number>> = Object.freeze({
  BOOL: 0, U8: 4, I8: 5, F8_E5M2: 6, F8_E4M3: 7, I16: 9, U16: 10, F16: 11, BF16: 12,
  I32: 13, U32: 14, F32: 15, F64: 17, I64: 18, U64: 19,
});

export const FLOAT_DTYPES: ReadonlySet<Dtype> = new Set<Dtype>(['F8_E5M2', 'F8_E4M3', 'F16', 'BF16', 'F32', 'F64']);

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

export type NativeArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndian(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new Error('safetensors conversion assumes a little-endian host; this machine is big-endian');
  }
}

// ---- lookup tables (built lazily, once) ----

let f16Table: Float32Array | undefined;
let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

/** 65,536-entry table: F16 bit pattern -> float32, built from bit manipulation (exact). */
export function f16LookupTable(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (man << 13); // inf, or NaN with its payload kept
    } else if (exp !== 0) {
      bits[h] = sign | ((exp + 112) << 23) | (man << 13); // rebias 15 -> 127
    } else if (man === 0) {
      bits[h] = sign; // signed zero
    } else {
      // subnormal: man * 2^-24, normalise into a float32 normal
      let e = 113; // exponent field of 2^-14
      let m = man;
      while ((m & 0x400) === 0) {
        m <<= 1;
        e--;
      }
      bits[h] = sign | (e << 23) | ((m & 0x3ff) << 13);
    }
  }
  f16Table = new Float32Array(bits.buffer);
  return f16Table;
}

/** 256-entry table for F8_E4M3 (e4m3fn: bias 7, no infinities, 0x7F/0xFF are NaN, max ±448). */
export function f8e4m3LookupTable(): Float32Array {
  if (e4m3Table) return e4m3Table;
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const s = b & 0x80 ? -1 : 1;
    const e = (b >> 3) & 0xf;
    const m = b & 7;
    if ((b & 0x7f) === 0x7f) t[b] = NaN;
    else if (e === 0) t[b] = s * m * 2 ** -9; // (m/8)·2^-6, keeps -0 for b = 0x80
    else t[b] = s * (8 + m) * 2 ** (e - 10); // (1+m/8)·2^(e-7)
  }
  e4m3Table = t;
  return t;
}

/** 256-entry table for F8_E5M2: the byte is the high half of an F16. */
export function f8e5m2LookupTable(): Float32Array {
  if (e5m2Table) return e5m2Table;
  const f16 = f16LookupTable();
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) t[b] = f16[b << 8];
  e5m2Table = t;
  return t;
}

// ---- conversion ----

/** A typed view of `bytes` with element size `size`, copying first when the offset is misaligned. */
function aligned<T>(bytes: Uint8Array, size: number, make: (buf: ArrayBufferLike, off: number, len: number) => T): T {
  const len = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, len);
  const copy = bytes.slice(); // fresh buffer, offset 0
  return make(copy.buffer, 0, len);
}

function checkLength(dtype: Dtype, bytes: Uint8Array): void {
  const size = DTYPE_SIZES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
}

/**
 * The bytes as their native typed array (a view when aligned, else a copy). F16/BF16/F8 become
 * Float32Array (JS has no half type); BOOL is Uint8Array (0/1 as stored).
 */
export function toNative(dtype: Dtype, bytes: Uint8Array): NativeArray {
  assertLittleEndian();
  checkLength(dtype, bytes);
  switch (dtype) {
    case 'BOOL':
    case 'U8':
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    case 'I8':
      return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    case 'I16':
      return aligned(bytes, 2, (b, o, n) => new Int16Array(b, o, n));
    case 'U16':
      return aligned(bytes, 2, (b, o, n) => new Uint16Array(b, o, n));
    case 'I32':
      return aligned(bytes, 4, (b, o, n) => new Int32Array(b, o, n));
    case 'U32':
      return aligned(bytes, 4, (b, o, n) => new Uint32Array(b, o, n));
    case 'F32':
      return aligned(bytes, 4, (b, o, n) => new Float32Array(b, o, n));
    case 'F64':
      return aligned(bytes, 8, (b, o, n) => new Float64Array(b, o, n));
    case 'I64':
      return aligned(bytes, 8, (b, o, n) => new BigInt64Array(b, o, n));
    case 'U64':
      return aligned(bytes, 8, (b, o, n) => new BigUint64Array(b, o, n));
    case 'F16':
    case 'BF16':
    case 'F8_E4M3':
    case 'F8_E5M2':
      return toFloat32(dtype, bytes);
  }
}

/**
 * Convert raw little-endian bytes of `dtype` to float32. F32 returns a view when aligned (no copy);
 * everything else allocates. Integers convert by value (I64/U64 through Number, exact up to 2^24 in f32).
 * `out`, when given, must have exactly bytes/size elements and receives the result.
 */
export function toFloat32(dtype: Dtype, bytes: Uint8Array, out?: Float32Array): Float32Array {
  assertLittleEndian();
  checkLength(dtype, bytes);
  const n = bytes.byteLength / DTYPE_SIZES[dtype];
  if (out && out.length !== n) throw new RangeError(`output has ${out.length} elements, expected ${n}`);
  switch (dtype) {
    case 'F32': {
      const v = aligned(bytes, 4, (b, o, len) => new Float32Array(b, o, len));
      if (out) {
        out.set(v);
        return out;
      }
      return v;
    }
    case 'BF16': {
      const src = aligned(bytes, 2, (b, o, len) => new Uint16Array(b, o, len));
      const dst = out ?? new Float32Array(n);
      const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return dst;
    }
    case 'F16': {
      const src = aligned(bytes, 2, (b, o, len) => new Uint16Array(b, o, len));
      const table = f16LookupTable();
      // Copy through the bit patterns so NaN payloads survive (float reads may canonicalise NaN).
      const tableBits = new Uint32Array(table.buffer);
      const dst = out ?? new Float32Array(n);
      const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = tableBits[src[i]];
      return dst;
    }
    case 'F8_E4M3':
    case 'F8_E5M2': {
      const table = dtype === 'F8_E4M3' ? f8e4m3LookupTable() : f8e5m2LookupTable();
      const dst = out ?? new Float32Array(n);
      for (let i = 0; i < n; i++) dst[i] = table[bytes[i]];
      return dst;
    }
    case 'I64':
    case 'U64': {
      const src = toNative(dtype, bytes) as BigInt64Array | BigUint64Array;
      const dst = out ?? new Float32Array(n);
      for (let i = 0; i < n; i++) dst[i] = Number(src[i]);
      return dst;
    }
    default: {
      // BOOL, U8, I8, I16, U16, I32, U32, F64: typed-array set converts by value (F64 rounds to nearest f32).
      const src = toNative(dtype, bytes) as Exclude<NativeArray, BigInt64Array | BigUint64Array>;
      const dst = out ?? new Float32Array(n);
      dst.set(src);
      return dst;
    }
  }
}

// ---- float32 -> 16-bit encoders (round to nearest even), for writing fixtures ----

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> BF16 bits, round-to-nearest-even (what torch's `.to(torch.bfloat16)` does); NaN stays a quiet NaN. */
export function float32ToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 -> F16 bits, round-to-nearest-even with overflow to ±inf and gradual underflow. */
export function float32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const man = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 | (man >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const m = man | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && (r & 1))) r++;
    return sign | r; // r may carry into the exponent field: that is the correct smallest normal
  }
  let r = (e << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1))) r++; // carry may round up to inf: correct
  return sign | r;
}

/** Encode a float32 array to the raw bytes of a 16-bit float dtype. */
export function encodeFloat32(dtype: 'F16' | 'BF16', values: ArrayLike<number>): Uint8Array {
  assertLittleEndian();
  const out = new Uint16Array(values.length);
  const f = dtype === 'F16' ? float32ToF16Bits : float32ToBf16Bits;
  for (let i = 0; i < values.length; i++) out[i] = f(values[i]);
  return new Uint8Array(out.buffer);
}
