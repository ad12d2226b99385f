/**
 * A checkpoint = one .safetensors file, or a sharded set described by a `*.safetensors.index.json`
 * (`{"metadata": {...}, "weight_map": {key: shard file}}`, the Hugging Face convention). Both are read
 * through the same interface; a sharded read is routed to the shard the weight map names.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { toFloat32, toNative, type NativeArray } from './dtypes.ts';
import { SafetensorsError, SafetensorsFile, unknownTensorError, type TensorInfo } from './safetensors.ts';

/** The reading interface shared by a single file and a sharded checkpoint. */
export interface TensorReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readBytes(name: string): Promise<Uint8Array>;
  readFloat32(name: string): Promise<Float32Array>;
  read(name: string): Promise<NativeArray>;
  close(): Promise<void>;
}

export interface Checkpoint extends TensorReader {
  /** Shard files (absolute or as given), one entry for a single-file checkpoint. */
  readonly files: readonly string[];
  /** The file holding `name`. */
  fileOf(name: string): string;
}

const INDEX_SUFFIX = '.safetensors.index.json';
const MAX_INDEX_BYTES = 100_000_000;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function listNames(names: string[], limit = 5): string {
  const shown = names.slice(0, limit).map((n) => JSON.stringify(n)).join(', ');
  return names.length > limit ? `${shown} and ${names.length - limit} more` : shown;
}

class SingleFileCheckpoint implements Checkpoint {
  constructor(private readonly file: SafetensorsFile) {}
  get path() { return this.file.path; }
  get metadata() { return this.file.metadata; }
  get tensors() { return this.file.tensors; }
  get files() { return [this.file.path]; }
  fileOf(name: string): string {
    this.file.info(name);
    return this.file.path;
  }
  readBytes(name: string) { return this.file.readBytes(name); }
  readFloat32(name: string) { return this.file.readFloat32(name); }
  read(name: string) { return this.file.read(name); }
  close() { return this.file.close(); }
}

class ShardedCheckpoint implements Checkpoint {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly files: readonly string[];
  constructor(
    readonly path: string,
    readonly metadata: Record<string, string>,
    private readonly route: Map<string, SafetensorsFile>,
    private readonly shards: SafetensorsFile[],
  ) {
    const tensors = new Map<string, TensorInfo>();
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

async function openIndex(indexPath: string): Promise<Checkpoint> {
  const bad = (what: string, code = 'SAFETENSORS_INDEX') => new SafetensorsError(indexPath, what, { code });
  const size = (await stat(indexPath).catch(() => ({ size: 0 }))).size;
  if (size > MAX_INDEX_BYTES) throw bad(`index file is ${size} bytes, over the ${MAX_INDEX_BYTES}-byte limit`);
  let raw: Uint8Array;
  try {
    raw = await readFile(indexPath);
  } catch (cause) {
    throw new SafetensorsError(indexPath, `cannot read index (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { code: 'SAFETENSORS_IO', cause });
  }
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
  const byShard = new Map<string, string[]>(); // shard file name -> keys
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

  // Every shard must exist before any is opened.
  const missing: string[] = [];
  for (const file of byShard.keys()) {
    const p = join(dir, file);
    const s = await stat(p).catch(() => undefined);
    if (!s || !s.isFile()) missing.push(file);
  }
  if (missing.length > 0) {
    throw bad(`${missing.length} shard file(s) named in weight_map are missing from ${dir}: ${listNames(missing)}; download the complete checkpoint`, 'SAFETENSORS_NOT_FOUND');
  }

  const shards: SafetensorsFile[] = [];
  try {
    const route = new Map<string, SafetensorsFile>();
    const problems: string[] = [];
    for (const [file, keys] of byShard) {
      const shard = await SafetensorsFile.open(join(dir, file));
      shards.push(shard);
      const absent = keys.filter((k) => !shard.tensors.has(k));
      if (absent.length > 0) problems.push(`${absent.length} key(s) not in ${file}: ${listNames(absent)}`);
      for (const k of keys) route.set(k, shard);
    }
    if (problems.length > 0) throw bad(`weight_map names tensors that their shard does not hold: ${problems.join('; ')}`);
    return new ShardedCheckpoint(indexPath, metadata, route, shards);
  } catch (e) {
    await Promise.all(shards.map((s) => s.close().catch(() => undefined)));
    throw e;
  }
}

/**
 * Open a checkpoint: a `.safetensors` file, a `*.safetensors.index.json`, or a directory holding
 * exactly one index (preferred) or exactly one `.safetensors` file.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const expected = `a .safetensors file, a *${INDEX_SUFFIX}, or a directory holding one`;
  let s;
  try {
    s = await stat(path);
  } catch (cause) {
    throw new SafetensorsError(path, `not found; expected ${expected}`, { code: 'SAFETENSORS_NOT_FOUND', cause });
  }
  if (s.isDirectory()) {
    const names = await readdir(path);
    const indexes = names.filter((n) => n.endsWith(INDEX_SUFFIX));
    const files = names.filter((n) => n.endsWith('.safetensors'));
    if (indexes.length === 1) return openIndex(join(path, indexes[0]));
    if (indexes.length === 0 && files.length === 1) return new SingleFileCheckpoint(await SafetensorsFile.open(join(path, files[0])));
    const found = indexes.length > 0 ? `${indexes.length} index files (${listNames(indexes)})` : files.length > 0 ? `${files.length} .safetensors files (${listNames(files)})` : 'no .safetensors files';
    throw new SafetensorsError(path, `is a directory with ${found}; pass the checkpoint file or index to use`, { code: 'SAFETENSORS_NOT_FOUND' });
  }
  if (basename(path).endsWith('.json')) return openIndex(path);
  return new SingleFileCheckpoint(await SafetensorsFile.open(path));
}

