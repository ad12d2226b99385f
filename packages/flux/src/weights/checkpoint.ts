/**
 * Where tensors are read from. A checkpoint = one .safetensors file, or a sharded set described by a
 * `*.safetensors.index.json` (`{"metadata": {...}, "weight_map": {key: shard file}}`, the Hugging Face convention);
 * both read through `TensorReader`, a sharded read routed to the shard the weight map names. `memoryCheckpoint`
 * is the same interface over host arrays or tensors (tests, weights made in code). `readCheckpointHeader` reads the
 * header(s) alone, synchronously, for model discovery.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { isDir, isFile } from '../shared/files.ts';
import { toFloat32, toNative, type Dtype, type NativeArray } from './dtypes.ts';
import { SafetensorsError, SafetensorsFile, unknownTensorError, type ParsedHeader } from './safetensors.ts';
import { listKeys } from './validate.ts';

/** A tensor as a checkpoint stores it. */
export interface StoredTensor {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
}

/** What the loader reads from: a file, a sharded set, or memory. */
export interface TensorReader {
  readonly path: string;
  /** The files read (none for memory). */
  readonly files: readonly string[];
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  /** The tensor's bytes as stored (little-endian `dtype`). */
  readBytes(name: string): Promise<Uint8Array>;
  /** Bytes [begin, end) of the tensor's data (rows of an embedding table). */
  readRange(name: string, begin: number, end: number): Promise<Uint8Array>;
  /** Memory readers: the bytes at once (lets a model be built synchronously). */
  readBytesSync?(name: string): Uint8Array;
}

export interface Checkpoint extends TensorReader {
  readonly metadata: Record<string, string>;
  readFloat32(name: string): Promise<Float32Array>;
  read(name: string): Promise<NativeArray>;
  /** The file holding `name`. */
  fileOf(name: string): string;
  close(): Promise<void>;
}

const INDEX_SUFFIX = '.safetensors.index.json';
const MAX_INDEX_BYTES = 100_000_000;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `"a", "b" and 3 more` */
function listNames(names: string[]): string {
  return listKeys(names.map((n) => JSON.stringify(n)), 5);
}

class SingleFileCheckpoint implements Checkpoint {
  private readonly file: SafetensorsFile;
  constructor(file: SafetensorsFile) {
    this.file = file;
  }
  get path() { return this.file.path; }
  get metadata() { return this.file.metadata; }
  get tensors() { return this.file.tensors; }
  get files() { return [this.file.path]; }
  fileOf(name: string): string {
    this.file.info(name);
    return this.file.path;
  }
  readBytes(name: string) { return this.file.readBytes(name); }
  readRange(name: string, begin: number, end: number) { return this.file.readRange(name, begin, end); }
  readFloat32(name: string) { return this.file.readFloat32(name); }
  read(name: string) { return this.file.read(name); }
  close() { return this.file.close(); }
}

class ShardedCheckpoint implements Checkpoint {
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  readonly files: readonly string[];
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly route: ReadonlyMap<string, SafetensorsFile>;
  private readonly shards: SafetensorsFile[];
  constructor(
    path: string,
    metadata: Record<string, string>,
    route: ReadonlyMap<string, SafetensorsFile>,
    shards: SafetensorsFile[],
  ) {
    this.path = path;
    this.metadata = metadata;
    this.route = route;
    this.shards = shards;
    const tensors = new Map<string, StoredTensor>();
    for (const [name, shard] of route) tensors.set(name, shard.tensors.get(name)!);
    this.tensors = tensors;
    this.files = shards.map((s) => s.path);
  }
  private shard(name: string): SafetensorsFile {
    const s = this.route.get(name);
    if (!s) throw unknownTensorError(this.path, name, this.route.keys(), this.route.size);
    return s;
  }
  fileOf(name: string): string { return this.shard(name).path; }
  readBytes(name: string) { return this.shard(name).readBytes(name); }
  readRange(name: string, begin: number, end: number) { return this.shard(name).readRange(name, begin, end); }
  async readFloat32(name: string) {
    const s = this.shard(name);
    return toFloat32(s.tensors.get(name)!.dtype, await s.readBytes(name));
  }
  async read(name: string) {
    const s = this.shard(name);
    return toNative(s.tensors.get(name)!.dtype, await s.readBytes(name));
  }
  async close() {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

interface ParsedIndex {
  metadata: Record<string, string>;
  /** shard file name -> its keys */
  byShard: Map<string, string[]>;
}

/** Validates an index file's JSON: a weight_map of relative shard paths inside its folder. */
function parseIndex(indexPath: string, raw: Uint8Array): ParsedIndex {
  const bad = (what: string) => new SafetensorsError(indexPath, what, { code: 'SAFETENSORS_INDEX' });
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (cause) {
    throw new SafetensorsError(indexPath, `index is not valid UTF-8 JSON (${cause instanceof Error ? cause.message.slice(0, 200) : String(cause)})`, { code: 'SAFETENSORS_INDEX', cause });
  }
  if (!isObj(parsed)) throw bad('index must be a JSON object with a "weight_map"');
  const { weight_map: wm, metadata: rawMeta } = parsed;
  if (!isObj(wm)) throw bad('index has no "weight_map" object mapping tensor names to shard files');
  const metadata: Record<string, string> = {};
  if (isObj(rawMeta)) {
    // HF indexes carry e.g. {"total_size": 23782506688} (a number): keep scalars as strings.
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') metadata[k] = String(v);
    }
  } else if (rawMeta !== undefined && rawMeta !== null) {
    throw bad('index "metadata" must be an object');
  }
  const dir = dirname(indexPath);
  const byShard = new Map<string, string[]>();
  for (const [key, file] of Object.entries(wm)) {
    if (typeof file !== 'string' || file === '') throw bad(`weight_map entry ${JSON.stringify(key)} must name a shard file, got ${JSON.stringify(file)}`);
    if (isAbsolute(file) || normalize(file).split(/[\\/]/).includes('..')) {
      throw bad(`weight_map entry ${JSON.stringify(key)} names ${JSON.stringify(file)}; shard files must be relative paths inside ${dir}`);
    }
    let keys = byShard.get(file);
    if (!keys) byShard.set(file, (keys = []));
    keys.push(key);
  }
  if (byShard.size === 0) throw bad('weight_map is empty');
  return { metadata, byShard };
}

const EXPECTED = `a .safetensors file, a *${INDEX_SUFFIX}, or a directory holding one`;

/** The checkpoint a directory holds: its one index, else its one .safetensors file. */
function pickInDirectory(path: string, names: string[]): string {
  const indexes = names.filter((n) => n.endsWith(INDEX_SUFFIX));
  const files = names.filter((n) => n.endsWith('.safetensors'));
  if (indexes.length === 1) return join(path, indexes[0]!);
  if (indexes.length === 0 && files.length === 1) return join(path, files[0]!);
  const found = indexes.length > 0 ? `${indexes.length} index files (${listNames(indexes)})` : files.length > 0 ? `${files.length} .safetensors files (${listNames(files)})` : 'no .safetensors files';
  throw new SafetensorsError(path, `is a directory with ${found}; pass the checkpoint file or index to use`, { code: 'SAFETENSORS_NOT_FOUND' });
}

/**
 * Open a checkpoint: a `.safetensors` file, a `*.safetensors.index.json`, or a directory holding
 * exactly one index (preferred) or exactly one `.safetensors` file. Every header is read and checked first.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const h = readCheckpointHeader(path);
  const opened = new Map<string, SafetensorsFile>();
  try {
    for (const [file, header] of h.headers) opened.set(file, await SafetensorsFile.open(file, header));
  } catch (e) {
    await Promise.all([...opened.values()].map((f) => f.close().catch(() => undefined)));
    throw e;
  }
  if (!h.shardOf) return new SingleFileCheckpoint(opened.get(h.path)!);
  const route = new Map([...h.shardOf].map(([key, file]) => [key, opened.get(file)!]));
  return new ShardedCheckpoint(h.path, h.metadata, route, [...opened.values()]);
}

/** A checkpoint's key table, read from its header(s) alone. */
export interface CheckpointHeader {
  /** The file or index read (a directory resolves to the checkpoint it holds). */
  readonly path: string;
  readonly files: readonly string[];
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  readonly metadata: Record<string, string>;
  /** Each file's parsed header. */
  readonly headers: ReadonlyMap<string, ParsedHeader>;
  /** Sharded: the file of each key (the index's weight_map). */
  readonly shardOf?: ReadonlyMap<string, string>;
}

/** A checkpoint's headers, read synchronously without keeping files open (model discovery; `openCheckpoint`). */
export function readCheckpointHeader(path: string): CheckpointHeader {
  if (!isFile(path) && !isDir(path)) throw new SafetensorsError(path, `not found; expected ${EXPECTED}`, { code: 'SAFETENSORS_NOT_FOUND' });
  if (isDir(path)) path = pickInDirectory(path, readdirSync(path));
  if (!basename(path).endsWith('.json')) {
    const header = SafetensorsFile.readHeaderSync(path);
    return { path, files: [path], tensors: header.tensors, metadata: header.metadata, headers: new Map([[path, header]]) };
  }
  const size = statSync(path).size;
  if (size > MAX_INDEX_BYTES) throw new SafetensorsError(path, `index file is ${size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`, { code: 'SAFETENSORS_INDEX' });
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (cause) {
    throw new SafetensorsError(path, `cannot read index (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
  }
  const index = parseIndex(path, raw);
  const dir = dirname(path);
  const missing = [...index.byShard.keys()].filter((file) => !isFile(join(dir, file)));
  if (missing.length > 0) {
    throw new SafetensorsError(path, `${missing.length} shard file(s) named in weight_map are missing from ${dir}: ${listNames(missing)}; download the complete checkpoint`, { code: 'SAFETENSORS_NOT_FOUND' });
  }
  const tensors = new Map<string, StoredTensor>();
  const headers = new Map<string, ParsedHeader>();
  const shardOf = new Map<string, string>();
  const problems: string[] = [];
  for (const [file, keys] of index.byShard) {
    const shard = join(dir, file);
    const header = SafetensorsFile.readHeaderSync(shard);
    headers.set(shard, header);
    const absent = keys.filter((k) => !header.tensors.has(k));
    if (absent.length > 0) problems.push(`${absent.length} key(s) not in ${file}: ${listNames(absent)}`);
    for (const k of keys) {
      if (!header.tensors.has(k)) continue;
      tensors.set(k, header.tensors.get(k)!);
      shardOf.set(k, shard);
    }
  }
  if (problems.length > 0) {
    throw new SafetensorsError(path, `weight_map names tensors that their shard does not hold: ${problems.join('; ')}`, { code: 'SAFETENSORS_INDEX' });
  }
  return { path, files: [...headers.keys()], tensors, metadata: index.metadata, headers, shardOf };
}

/** The checkpoints directly in a folder: indexes, plus .safetensors files that no index names as a shard. */
export function listCheckpoints(dir: string): string[] {
  const names = readdirSync(dir).sort();
  const indexes = names.filter((n) => n.endsWith(INDEX_SUFFIX));
  const shards = new Set<string>();
  for (const idx of indexes) {
    try {
      const wm = (JSON.parse(readFileSync(join(dir, idx), 'utf8')) as { weight_map?: Record<string, unknown> }).weight_map;
      for (const f of Object.values(wm ?? {})) if (typeof f === 'string') shards.add(f);
    } catch {
      // reading the checkpoint reports a broken index
    }
  }
  const files = names.filter((n) => n.endsWith('.safetensors') && !shards.has(n) && !/-\d{5}-of-\d{5}\.safetensors$/.test(n));
  return [...indexes, ...files];
}

/** A tensor given in memory: a tfjs tensor (read once), or float32 data with its checkpoint-layout shape. */
export type WeightValue = tf.Tensor | { readonly data: Float32Array; readonly shape: readonly number[] };

/**
 * A TensorReader over tensors in memory (float32, read once: tfjs tensors are not kept, the caller still owns
 * them). Lets weights made in code or in tests go through the same loader as files.
 */
export function memoryCheckpoint(values: Iterable<[string, WeightValue]> | Record<string, WeightValue>, path = '<memory>'): TensorReader {
  const entries = Symbol.iterator in values ? [...(values as Iterable<[string, WeightValue]>)] : Object.entries(values);
  const bytes = new Map<string, Uint8Array>();
  const tensors = new Map<string, StoredTensor>();
  for (const [name, v] of entries) {
    const data = v instanceof tf.Tensor ? (v.dataSync() as Float32Array) : v.data;
    const shape = [...v.shape];
    if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new RangeError(`${name}: ${data.length} values for shape [${shape.join(', ')}]`);
    bytes.set(name, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    tensors.set(name, { dtype: 'F32', shape });
  }
  const get = (name: string): Uint8Array => {
    const b = bytes.get(name);
    if (!b) throw unknownTensorError(path, name, bytes.keys(), bytes.size);
    return b;
  };
  return {
    path,
    files: [],
    tensors,
    readBytesSync: get,
    readBytes: async (name) => get(name),
    readRange: async (name, begin, end) => get(name).subarray(begin, end),
  };
}
