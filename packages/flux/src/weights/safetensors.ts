/**
 * Safetensors reader and writer (format: shared/spec/flux-reference-facts.md §7; reference:
 * huggingface/safetensors safetensors/src/tensor.rs).
 *
 * The reader never reads a whole file to learn about it: `SafetensorsFile.open` reads the 8-byte
 * length and the JSON header through a file handle, validates everything before allocating anything
 * sized by the file, and reads each tensor's byte range on demand. `parseHeader` is the single
 * validation path, shared by the file reader and the in-memory `decodeSafetensors`.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { open, writeFile, type FileHandle } from 'node:fs/promises';
import { constants as bufferConstants } from 'node:buffer';
import { FluxError } from '@flux-ts/core';
import {
  DTYPES, DTYPE_RANK, DTYPE_SIZES, FLOAT_DTYPES, HOST_IS_LITTLE_ENDIAN, encodeFloat32, isDtype, toFloat32, toNative,
  type Dtype, type NativeArray,
} from './dtypes.ts';

export type { Dtype, NativeArray } from './dtypes.ts';
export { DTYPES, DTYPE_SIZES, encodeFloat32, toFloat32, toNative } from './dtypes.ts';

/** The reference parser's cap on the JSON header (safetensors MAX_HEADER_SIZE). */
export const MAX_HEADER_SIZE = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data region. */
  dataOffsets: [number, number];
}

export interface NamedTensor {
  dtype: Dtype;
  shape: number[];
  data: ArrayBufferView;
}

export interface ParsedHeader {
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
  /** Absolute file offset of the data region (8 + header length). */
  dataStart: number;
  /** Length of the data region in bytes. */
  dataLength: number;
}

/** Any problem with a safetensors file: what is wrong, in which file (and tensor). */
export class SafetensorsError extends FluxError {
  readonly path: string;
  readonly tensor?: string;
  constructor(path: string, message: string, opts: { tensor?: string; code?: string; cause?: unknown } = {}) {
    const where = opts.tensor !== undefined ? `${path}: tensor ${JSON.stringify(opts.tensor)}` : path;
    super(opts.code ?? 'SAFETENSORS_INVALID', `${where}: ${message}`, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'SafetensorsError';
    this.path = path;
    if (opts.tensor !== undefined) this.tensor = opts.tensor;
  }
}

// ---------------------------------------------------------------------------------------------
// Header parsing (pure, in memory)
// ---------------------------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Deeper than any safetensors header needs (3); serde_json, the reference's parser, stops at 128. */
const MAX_JSON_DEPTH = 64;

const QUOTE = 0x22, BACKSLASH = 0x5c, MINUS = 0x2d, ZERO = 0x30, NINE = 0x39;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d, COMMA = 0x2c;

/**
 * One linear pass over the header text, outside strings.
 * Before JSON.parse (`full = false`): only the nesting depth, so a pathological 100 MB `[[[[…` is
 * rejected at once instead of being parsed.
 * After JSON.parse accepted the text (`full = true`), also what JSON.parse hides and the reference
 * (serde, usize fields) rejects: number literals that are not plain non-negative integers (`1.0`,
 * `1e3`, `-0`), and duplicate top-level keys (JSON.parse silently keeps the last; serde rejects a
 * duplicate `__metadata__`, and a duplicate tensor name is ambiguous).
 */
function scanHeaderText(text: string, path: string, full: boolean): void {
  const seen = full ? new Set<string>() : undefined;
  const len = text.length;
  let depth = 0;
  let prev = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let j = i + 1;
      let escaped = false;
      while (j < len) {
        const d = text.charCodeAt(j);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          escaped = true;
          j += 2;
        } else j++;
      }
      if (seen && depth === 1 && (prev === LBRACE || prev === COMMA)) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (seen.has(key)) throw new SafetensorsError(path, `header has the key ${JSON.stringify(key)} more than once`);
        seen.add(key);
      }
      i = j;
      prev = QUOTE;
    } else if (c === LBRACE || c === LBRACKET) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new SafetensorsError(path, `header nests JSON more than ${MAX_JSON_DEPTH} levels deep; this is not a safetensors header`);
      }
      prev = c;
    } else if (c === RBRACE || c === RBRACKET) {
      depth--;
      prev = c;
    } else if (full && (c === MINUS || (c >= ZERO && c <= NINE))) {
      let j = i + 1;
      let plain = c !== MINUS;
      while (j < len) {
        const d = text.charCodeAt(j);
        if (d >= ZERO && d <= NINE) j++;
        else if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === MINUS) {
          plain = false; // . e E + -
          j++;
        } else break;
      }
      if (!plain) {
        throw new SafetensorsError(path, `header contains the number ${text.slice(i, Math.min(j, i + 40))}; shapes and data_offsets must be non-negative integers`);
      }
      i = j - 1;
      prev = ZERO;
    } else if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) {
      prev = c;
    }
  }
}

/**
 * Validate the 8-byte length prefix against the file size; returns the header length N.
 * `prefix` must hold at least the first 8 bytes when the file has them.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new SafetensorsError(path, `file is ${fileSize} bytes, too small to be a safetensors file (it needs an 8-byte header length)`, { code: 'SAFETENSORS_TRUNCATED' });
  }
  const n64 = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(path, `header length ${n64} exceeds the ${MAX_HEADER_SIZE}-byte limit; this is not a safetensors file or it is corrupt`);
  }
  const n = Number(n64);
  if (8 + n > fileSize) {
    throw new SafetensorsError(path, `header length ${n} runs past the end of the ${fileSize}-byte file; the file is truncated or not a safetensors file`, { code: 'SAFETENSORS_TRUNCATED' });
  }
  if (n < 2) throw new SafetensorsError(path, `header length ${n} is too small to hold a JSON object`);
  return n;
}

function tensorInfoFrom(path: string, name: string, raw: unknown): TensorInfo {
  const bad = (what: string) => new SafetensorsError(path, what, { tensor: name });
  if (!isPlainObject(raw)) throw bad(`header entry must be an object with dtype, shape and data_offsets, got ${describe(raw)}`);
  const { dtype, shape, data_offsets: offs } = raw;
  if (!isDtype(dtype)) {
    throw bad(`unsupported dtype ${describe(dtype)}; supported: ${DTYPES.join(', ')}`);
  }
  if (!Array.isArray(shape)) throw bad(`shape must be an array of non-negative integers, got ${describe(shape)}`);
  let elements = 1;
  for (const d of shape) {
    if (!isIndex(d)) throw bad(`shape [${shape.map(String).join(', ')}] has a dimension that is not a non-negative integer: ${describe(d)}`);
  }
  if (shape.includes(0)) elements = 0;
  else {
    for (const d of shape as number[]) {
      elements *= d;
      if (elements > Number.MAX_SAFE_INTEGER) throw bad(`shape [${shape.join(', ')}] has more elements than can be addressed (over 2^53)`);
    }
  }
  if (!Array.isArray(offs) || offs.length !== 2 || !isIndex(offs[0]) || !isIndex(offs[1])) {
    throw bad(`data_offsets must be [begin, end] with non-negative integers, got ${Array.isArray(offs) ? JSON.stringify(offs).slice(0, 80) : describe(offs)}`);
  }
  // `+ 0`: never -0 (scanHeaderText rejects a "-0" literal; this keeps the invariant local)
  const begin = (offs[0] as number) + 0;
  const end = (offs[1] as number) + 0;
  if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`);
  const bytes = elements * DTYPE_SIZES[dtype];
  if (bytes > Number.MAX_SAFE_INTEGER || bytes !== end - begin) {
    throw bad(`dtype ${dtype} with shape [${shape.join(', ')}] needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  return { name, dtype, shape: (shape as number[]).map((d) => d + 0), dataOffsets: [begin, end] };
}

/**
 * Parse and validate a header. `bytes` starts at byte 0 of the file and holds at least 8 + N bytes
 * (more is fine: only the header is looked at); `fileSize` is the size of the whole file.
 * Checks, in order, before anything is allocated from file-provided sizes: length prefix within the
 * file and at most 100 MB; strict UTF-8; a JSON object; every entry a known dtype, a shape of
 * non-negative safe integers, offsets [begin <= end] whose size matches dtype × shape; `__metadata__`
 * a string→string map; entries sorted by offset tile [0, dataLength) exactly (no holes, no overlaps),
 * with dataLength = fileSize − 8 − N as the reference requires.
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, path: string): ParsedHeader {
  const n = parseHeaderLength(bytes, fileSize, path);
  if (bytes.byteLength < 8 + n) {
    throw new SafetensorsError(path, `only ${bytes.byteLength} header bytes given, ${8 + n} needed`, { code: 'SAFETENSORS_TRUNCATED' });
  }
  return parseHeaderJson(bytes.subarray(8, 8 + n), fileSize, path);
}

/** Validate the N JSON bytes of a header (without the length prefix) for a file of `fileSize` bytes. */
export function parseHeaderJson(json: Uint8Array, fileSize: number, path: string): ParsedHeader {
  const dataStart = 8 + json.byteLength;
  const dataLength = fileSize - dataStart;
  if (dataLength < 0) throw new SafetensorsError(path, `header runs past the end of the ${fileSize}-byte file`, { code: 'SAFETENSORS_TRUNCATED' });
  let text: string;
  try {
    text = utf8.decode(json);
  } catch (cause) {
    throw new SafetensorsError(path, 'header is not valid UTF-8; this is not a safetensors file or it is corrupt', { cause });
  }
  scanHeaderText(text, path, false);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError(path, `header is not valid JSON (${msg.slice(0, 200)}); this is not a safetensors file or it is corrupt`, { cause });
  }
  if (!isPlainObject(parsed)) throw new SafetensorsError(path, `header must be a JSON object, got ${describe(parsed)}`);
  scanHeaderText(text, path, true);

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const key of Object.keys(parsed)) {
    const value = parsed[key];
    if (key === '__metadata__') {
      if (value === null) continue; // the reference accepts null (Option<HashMap>)
      if (!isPlainObject(value)) throw new SafetensorsError(path, `__metadata__ must be an object of strings, got ${describe(value)}`);
      for (const mk of Object.keys(value)) {
        const mv = value[mk];
        if (typeof mv !== 'string') throw new SafetensorsError(path, `__metadata__ value for ${JSON.stringify(mk)} must be a string, got ${describe(mv)}`);
        Object.defineProperty(metadata, mk, { value: mv, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    tensors.set(key, tensorInfoFrom(path, key, value));
  }

  // Tiling: sorted by (begin, end) the entries must cover [0, dataLength) with no hole or overlap.
  const sorted = [...tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  for (const t of sorted) {
    const [begin, end] = t.dataOffsets;
    if (end > dataLength) {
      throw new SafetensorsError(path, `data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data region; the file is truncated or the header is wrong`, { tensor: t.name, code: 'SAFETENSORS_TRUNCATED' });
    }
    if (begin < cursor) throw new SafetensorsError(path, `data_offsets [${begin}, ${end}] overlap the previous tensor, which ends at ${cursor}`, { tensor: t.name });
    if (begin > cursor) throw new SafetensorsError(path, `data_offsets [${begin}, ${end}] leave a hole: bytes [${cursor}, ${begin}) belong to no tensor`, { tensor: t.name });
    cursor = end;
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(path, `tensors cover ${cursor} bytes of data but the file has ${dataLength} after the header; bytes [${cursor}, ${dataLength}) belong to no tensor`);
  }
  return { metadata, tensors, dataStart, dataLength };
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/** Largest chunk handed to one FileHandle.read call (it takes an int32 length). */
const READ_CHUNK = 1 << 30;

async function readExactly(fh: FileHandle, into: Uint8Array, position: number, path: string, what: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const len = Math.min(READ_CHUNK, into.byteLength - done);
    const { bytesRead } = await fh.read(into, done, len, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(path, `file ended while reading ${what} (${done} of ${into.byteLength} bytes at offset ${position}); was it truncated?`, { code: 'SAFETENSORS_TRUNCATED' });
    }
    done += bytesRead;
  }
}

/** The size of the regular file at `path`, or a SafetensorsError saying what is there instead. */
function statFile(path: string, expected: string): number {
  let s;
  try {
    s = statSync(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new SafetensorsError(path, `file not found; expected ${expected}`, { code: 'SAFETENSORS_NOT_FOUND', cause });
    }
    throw new SafetensorsError(path, `cannot read (${code ?? String(cause)}); expected ${expected}`, { code: 'SAFETENSORS_IO', cause });
  }
  if (s.isDirectory()) {
    throw new SafetensorsError(path, `is a directory; expected ${expected}`, { code: 'SAFETENSORS_NOT_FOUND' });
  }
  if (!s.isFile()) throw new SafetensorsError(path, `is not a regular file; expected ${expected}`, { code: 'SAFETENSORS_NOT_FOUND' });
  return s.size;
}

function closestNames(name: string, names: Iterable<string>, limit = 3): string[] {
  // Cheap similarity: shared prefix length, then length difference. Enough to point at a typo.
  const scored: [number, string][] = [];
  for (const c of names) {
    let p = 0;
    while (p < c.length && p < name.length && c[p] === name[p]) p++;
    scored.push([p * 1000 - Math.abs(c.length - name.length), c]);
  }
  scored.sort((a, b) => b[0] - a[0]);
  return scored.slice(0, limit).map(([, c]) => c);
}

export function unknownTensorError(path: string, name: string, names: Iterable<string>, count: number): SafetensorsError {
  const near = closestNames(name, names);
  const hint = count === 0 ? 'the file holds no tensors' : `it holds ${count} tensors; closest names: ${near.map((s) => JSON.stringify(s)).join(', ')}`;
  return new SafetensorsError(path, `no tensor named ${JSON.stringify(name)} (${hint})`, { tensor: name, code: 'SAFETENSORS_UNKNOWN_TENSOR' });
}

/** One safetensors file: header read on open, tensor data read on demand by byte range. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Absolute offset of the data region. */
  readonly dataStart: number;
  readonly fileSize: number;
  #fh: FileHandle | undefined;

  private constructor(path: string, fh: FileHandle, header: ParsedHeader, fileSize: number) {
    this.path = path;
    this.#fh = fh;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.dataStart = header.dataStart;
    this.fileSize = fileSize;
  }

  /** Reads and validates the header, then keeps the file open for tensor reads. */
  static async open(path: string, header: ParsedHeader = SafetensorsFile.readHeaderSync(path)): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      throw new SafetensorsError(path, `cannot open (${code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
    }
    return new SafetensorsFile(path, fh, header, header.dataStart + header.dataLength);
  }

  /**
   * The header alone (8-byte length, JSON, validated before anything sized by the file is allocated), read
   * synchronously: model discovery reads every component's header this way, in milliseconds.
   */
  static readHeaderSync(path: string): ParsedHeader {
    const fileSize = statFile(path, 'a .safetensors file');
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw new SafetensorsError(path, `cannot open (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
    }
    try {
      const read = (into: Uint8Array, position: number, what: string) => {
        let done = 0;
        while (done < into.byteLength) {
          const n = readSync(fd, into, done, Math.min(READ_CHUNK, into.byteLength - done), position + done);
          if (n === 0) throw new SafetensorsError(path, `file ended while reading ${what}; was it truncated?`, { code: 'SAFETENSORS_TRUNCATED' });
          done += n;
        }
      };
      const prefix = new Uint8Array(Math.min(8, fileSize));
      read(prefix, 0, 'the header length');
      const n = parseHeaderLength(prefix, fileSize, path);
      const json = new Uint8Array(n);
      read(json, 8, 'the header');
      return parseHeaderJson(json, fileSize, path);
    } finally {
      closeSync(fd);
    }
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw unknownTensorError(this.path, name, this.tensors.keys(), this.tensors.size);
    return t;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Raw little-endian bytes of a tensor, in a fresh (8-byte aligned) buffer. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    return this.readRange(name, 0, t.dataOffsets[1] - t.dataOffsets[0]);
  }

  /** Bytes [begin, end) of a tensor's data (e.g. a few rows of an embedding table), in a fresh buffer. */
  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    const t = this.info(name);
    const fh = this.#fh;
    if (!fh) throw new SafetensorsError(this.path, 'file is closed', { tensor: name, code: 'SAFETENSORS_CLOSED' });
    const size = t.dataOffsets[1] - t.dataOffsets[0];
    if (!(Number.isSafeInteger(begin) && Number.isSafeInteger(end) && 0 <= begin && begin <= end && end <= size)) {
      throw new RangeError(`${this.path}: bytes [${begin}, ${end}) are outside tensor ${JSON.stringify(name)} (${size} bytes)`);
    }
    const len = end - begin;
    if (len > bufferConstants.MAX_LENGTH) {
      throw new SafetensorsError(this.path, `tensor is ${len} bytes, larger than the ${bufferConstants.MAX_LENGTH}-byte maximum buffer of this Node.js`, { tensor: name });
    }
    const out = new Uint8Array(len);
    try {
      await readExactly(fh, out, this.dataStart + t.dataOffsets[0] + begin, this.path, `tensor ${JSON.stringify(name)}`);
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(this.path, `read failed (${e instanceof Error ? e.message : String(e)})`, { tensor: name, code: 'SAFETENSORS_IO', cause: e });
    }
    return out;
  }

  /** Tensor as float32 (F16/BF16/F8 exactly, F64 rounded, integers by value). */
  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return toFloat32(t.dtype, await this.readBytes(name));
  }

  /** Tensor as its native typed array; F16/BF16/F8 (no JS type) become Float32Array. */
  async read(name: string): Promise<NativeArray> {
    const t = this.info(name);
    return toNative(t.dtype, await this.readBytes(name));
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    if (fh) await fh.close();
  }
}

export type LoadedTensor = { dtype: Dtype; shape: number[]; data: NativeArray };

/** Every tensor of a (small) file: float dtypes as Float32Array, integers and BOOL native. */
export async function loadSafetensors(path: string): Promise<Record<string, LoadedTensor>> {
  const f = await SafetensorsFile.open(path);
  try {
    const out: Record<string, LoadedTensor> = {};
    for (const [name, t] of f.tensors) {
      const data = FLOAT_DTYPES.has(t.dtype) ? await f.readFloat32(name) : await f.read(name);
      out[name] = { dtype: t.dtype, shape: t.shape.slice(), data };
    }
    return out;
  } finally {
    await f.close();
  }
}

/** Parse a whole in-memory file (same validation as the file reader). */
export function decodeSafetensors(bytes: Uint8Array, path = '<memory>'): { metadata: Record<string, string>; tensors: Record<string, LoadedTensor & { bytes: Uint8Array }> } {
  const h = parseHeader(bytes, bytes.byteLength, path);
  const tensors: Record<string, LoadedTensor & { bytes: Uint8Array }> = {};
  for (const [name, t] of h.tensors) {
    const raw = bytes.subarray(h.dataStart + t.dataOffsets[0], h.dataStart + t.dataOffsets[1]);
    const data = FLOAT_DTYPES.has(t.dtype) ? toFloat32(t.dtype, raw) : toNative(t.dtype, raw);
    tensors[name] = { dtype: t.dtype, shape: t.shape.slice(), data, bytes: raw };
  }
  return { metadata: h.metadata, tensors };
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

interface Layout {
  header: Uint8Array; // 8-byte length + padded JSON
  order: string[];
  dataLength: number;
}

/**
 * Lay out entries the way the reference `serialize` does: sorted by dtype rank descending, then by
 * name (byte order); `__metadata__` first; compact JSON with fields dtype, shape, data_offsets;
 * padded with spaces to a multiple of 8.
 */
function layout(path: string, entries: { name: string; dtype: Dtype; shape: number[] }[], metadata?: Record<string, string>): Layout {
  const seen = new Set<string>();
  for (const e of entries) {
    const bad = (what: string) => new SafetensorsError(path, what, { tensor: e.name, code: 'SAFETENSORS_WRITE' });
    if (e.name === '__metadata__') throw bad('"__metadata__" is reserved and cannot be a tensor name');
    if (seen.has(e.name)) throw bad('duplicate tensor name');
    seen.add(e.name);
    if (!isDtype(e.dtype)) throw bad(`unsupported dtype ${describe(e.dtype)}; supported: ${DTYPES.join(', ')}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isIndex)) throw bad(`shape must be an array of non-negative integers, got ${JSON.stringify(e.shape)}`);
  }
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(path, `metadata value for ${JSON.stringify(k)} must be a string`, { code: 'SAFETENSORS_WRITE' });
    }
  }
  const cmpBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  const sorted = entries.slice().sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || cmpBytes(a.name, b.name));
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const e of sorted) {
    const elements = e.shape.reduce((p, d) => p * d, 1);
    const bytes = elements * DTYPE_SIZES[e.dtype];
    if (!Number.isSafeInteger(bytes) || !Number.isSafeInteger(offset + bytes)) {
      throw new SafetensorsError(path, `shape [${e.shape.join(', ')}] is too large to address`, { tensor: e.name, code: 'SAFETENSORS_WRITE' });
    }
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`);
    offset += bytes;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const n = Math.ceil(json.byteLength / 8) * 8;
  if (n > MAX_HEADER_SIZE) throw new SafetensorsError(path, `header would be ${n} bytes, over the ${MAX_HEADER_SIZE}-byte limit readers enforce`, { code: 'SAFETENSORS_WRITE' });
  const header = new Uint8Array(8 + n);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  header.fill(0x20, 8 + json.byteLength);
  return { header, order: sorted.map((e) => e.name), dataLength: offset };
}

function tensorBytes(path: string, name: string, t: NamedTensor): Uint8Array {
  if (!ArrayBuffer.isView(t.data)) throw new SafetensorsError(path, 'data must be a typed array or DataView', { tensor: name, code: 'SAFETENSORS_WRITE' });
  const elements = t.shape.reduce((p, d) => p * d, 1);
  if ((t.dtype === 'F16' || t.dtype === 'BF16') && t.data instanceof Float32Array && t.data.length === elements && elements > 0) {
    return encodeFloat32(t.dtype, t.data); // float32 values given for a 16-bit dtype: round to nearest even
  }
  const expected = elements * DTYPE_SIZES[t.dtype];
  if (t.data.byteLength !== expected) {
    throw new SafetensorsError(path, `data is ${t.data.byteLength} bytes but dtype ${t.dtype} with shape [${t.shape.join(', ')}] needs ${expected} (pass the raw bytes of the dtype, e.g. encodeFloat32('BF16', values))`, { tensor: name, code: 'SAFETENSORS_WRITE' });
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Serialize tensors to safetensors bytes, byte-identical to the reference `safetensors.torch.save`
 * for the same tensors and metadata (tensor order is the reference's: dtype rank desc, then name).
 * `data` holds the raw little-endian bytes of the dtype (e.g. Uint16Array of BF16 bits); for F16 and
 * BF16 a Float32Array with one value per element is also accepted and rounded to nearest even.
 */
export function encodeSafetensors(tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): Uint8Array {
  if (!HOST_IS_LITTLE_ENDIAN) throw new Error('safetensors writing assumes a little-endian host');
  const path = '<encodeSafetensors>';
  const names = Object.keys(tensors);
  const lay = layout(path, names.map((name) => ({ name, dtype: tensors[name].dtype, shape: tensors[name].shape })), metadata);
  const datas = new Map(names.map((name) => [name, tensorBytes(path, name, tensors[name])]));
  const out = new Uint8Array(lay.header.byteLength + lay.dataLength);
  out.set(lay.header, 0);
  let pos = lay.header.byteLength;
  for (const name of lay.order) {
    const d = datas.get(name)!;
    out.set(d, pos);
    pos += d.byteLength;
  }
  return out;
}

export async function writeSafetensors(path: string, tensors: Record<string, NamedTensor>, metadata?: Record<string, string>): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = encodeSafetensors(tensors, metadata);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(path, e.message.replace(/^<encodeSafetensors>: /, ''), { code: e.code, cause: e });
    throw e;
  }
  try {
    await writeFile(path, bytes);
  } catch (cause) {
    throw new SafetensorsError(path, `cannot write (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
  }
}

/**
 * Write a valid header for `entries` and extend the file to full size with ftruncate: the data
 * region is left sparse (reads return zeros), so a full-size checkpoint header (e.g. the 23.8 GB
 * FLUX transformer) costs a few KB of disk. Layout is the reference writer's (see `encodeSafetensors`).
 * Returns the total file size.
 */
export async function writeSparseSafetensors(
  path: string,
  entries: { name: string; dtype: Dtype; shape: number[] }[],
  metadata?: Record<string, string>,
): Promise<number> {
  const lay = layout(path, entries, metadata);
  const total = lay.header.byteLength + lay.dataLength;
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'w');
    await fh.write(lay.header, 0, lay.header.byteLength, 0);
    await fh.truncate(total);
  } catch (cause) {
    throw new SafetensorsError(path, `cannot write sparse file (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
  } finally {
    await fh?.close();
  }
  return total;
}
