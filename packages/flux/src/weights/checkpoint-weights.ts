/**
 * `CheckpointWeights`: the one way every model (transformer, VAE, T5, CLIP) gets its weights from a checkpoint.
 *
 * Opening it checks the checkpoint against the layout (weights/layout.ts: the model's spec plus the rules of this
 * checkpoint's layout) by names AND shapes, from the header alone. Then a model asks for one module at a time:
 *   get(prefix)       the model tensors under `prefix` (keys relative to it), built by the one executor
 *                     (weights/executor.ts) from the bytes as stored;
 *   prefetch(prefix)  starts reading the next module's bytes while the current one computes;
 *   release(...)      done with a module;
 *   rows(key, ids)    rows of an embedding table, read by byte range (the table is never decoded whole).
 * Residency: 'streamed' builds a module's tensors on every `get` and disposes them on `release` (one module on the
 * device); 'resident' keeps what it built (the first `get`, or `loadAll`) until `dispose`. Same values either way.
 * 'fp8' keeps too, with Linear weights stored as fp8 e4m3fn (bf16 precision only; half the memory).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Residency } from '../runtime/backend.ts';
import type { Precision } from '../runtime/bf16.ts';
import type { RawTensor } from './assemble.ts';
import type { TensorReader } from './checkpoint.ts';
import { DTYPE_SIZES, toFloat32 } from './dtypes.ts';
import { WeightExecutor, placementOf, type Placement } from './executor.ts';
import { checkpointTable, type CheckpointLayout, type Rule } from './layout.ts';
import type { Weights } from './spec.ts';
import { compareKeys, describeDiff, listKeys } from './validate.ts';

/** How far `get` reads ahead of the tensor it builds, in stored bytes (a full-size double block is 0.6 GB in bf16). */
const READ_AHEAD_BYTES = 1 << 30;

/** ComfyUI "scaled fp8" marker key (an empty tensor). */
const SCALED_FP8_MARKER = 'scaled_fp8';
const SCALE_WEIGHT = '.scale_weight';
const SCALE_INPUT = '.scale_input';

export interface CheckpointWeightsOptions {
  /** Default 'streamed'. */
  residency?: Residency;
  /**
   * Read the next module's bytes while the current one computes (default true). Costs host memory for one module
   * as stored; false reads on demand only.
   */
  prefetch?: boolean;
  /** Key prefix of this model's tensors in the file ('' = none); other keys belong to other models and are ignored. */
  prefix?: string;
  /** The checkpoint, for messages (default: the reader's path). */
  where?: string;
  /**
   * 'fp32' (default): every tensor float32. 'bf16': Linear and conv weights become bf16 TensorFlow tensors from the
   * bytes as stored (native backend only; weights/executor.ts), the rest float32.
   */
  precision?: Precision;
  /** How far a `get` (or `loadAll`) reads ahead of the tensor it builds, in stored bytes (default 1 GiB). */
  readAheadBytes?: number;
}

export class CheckpointWeights {
  readonly residency: Residency;
  readonly prefix: string;
  /** Bytes read for embedding rows so far. */
  rowBytesRead = 0;
  private readonly where: string;
  private readonly prefetching: boolean;
  private readonly readAheadBytes: number;
  private readonly rules = new Map<string, Rule>();
  private readonly placements = new Map<string, Placement>();
  /**
   * ComfyUI scaled fp8 (comfy/ops.py `scaled_fp8_ops`): next to a Linear's `X.weight` (fp8) a scalar
   * `X.scale_weight` (dequantized weight = value x scale) and maybe `X.scale_input` (an fp8 matmul's activation
   * scale, unused in float32). Checkpoint weight key -> its scale key.
   */
  private readonly scales = new Map<string, string>();
  /** Checkpoint key -> its bytes being read (the prefetched module only). */
  private readonly pending = new Map<string, Promise<RawTensor>>();
  /** Resident: model key -> the tensor built. */
  private readonly kept = new Map<string, tf.Tensor>();
  private readonly executor: WeightExecutor;
  readonly precision: Precision;

  /** Checks every name and shape of the checkpoint against `layout` (no data read); throws `layout.error`. */
  readonly reader: TensorReader;
  readonly layout: CheckpointLayout;
  constructor(
    reader: TensorReader,
    layout: CheckpointLayout,
    options: CheckpointWeightsOptions = {},
  ) {
    this.reader = reader;
    this.layout = layout;
    this.residency = options.residency ?? 'streamed';
    this.readAheadBytes = options.readAheadBytes ?? READ_AHEAD_BYTES;
    this.prefix = options.prefix ?? '';
    this.prefetching = options.prefetch ?? true;
    this.where = (options.where ?? reader.path) + (this.prefix ? ` (keys under "${this.prefix}")` : '');
    this.precision = options.precision ?? 'fp32';
    if (this.residency === 'fp8' && this.precision !== 'bf16') {
      throw new this.layout.error(`the fp8 residency computes in bf16: open ${this.where} with precision bf16 (native backend), or pick resident / streamed`);
    }
    this.executor = new WeightExecutor(this.precision, this.residency === 'fp8' ? 'fp8' : 'as-built');
    for (const r of layout.rules) {
      this.rules.set(r.key, r);
      this.placements.set(r.key, placementOf(r.key, layout.spec[r.key]!, layout.tables));
    }
    this.validate();
  }

  private fail(problem: string): never {
    throw new this.layout.error(`${this.where} does not match the ${this.layout.model}: ${problem}. ${this.layout.hint}`);
  }

  /** The one validation: the file's keys under the prefix (scale keys set aside) against the layout's table. */
  private validate(): void {
    const actual = new Map<string, { shape: readonly number[] }>();
    const badScales: string[] = [];
    for (const [name, info] of this.reader.tensors) {
      if (!name.startsWith(this.prefix)) continue;
      const key = name.slice(this.prefix.length);
      if (key === SCALED_FP8_MARKER || key.endsWith(SCALE_INPUT)) continue; // the marker announces the scales; input scales are unused in float32
      if (key.endsWith(SCALE_WEIGHT)) {
        const w = key.slice(0, -SCALE_WEIGHT.length) + '.weight';
        if (info.shape.reduce((a, b) => a * b, 1) !== 1) badScales.push(`${key} has shape [${info.shape.join(', ')}], a per-tensor scalar expected`);
        else if (!this.reader.tensors.has(this.prefix + w)) badScales.push(`${key} scales ${w}, which the file does not hold`);
        else this.scales.set(w, key);
        continue;
      }
      actual.set(key, info);
    }
    if (badScales.length) this.fail(`unsupported scaled-fp8 layout: ${listKeys(badScales, 4)}; use an unscaled fp8, bf16 or fp32 checkpoint`);
    const problem = describeDiff(compareKeys(actual, { tensors: checkpointTable(this.layout), optional: this.layout.optional }));
    if (problem) this.fail(problem);
  }

  /** The model keys under `prefix`, in spec order. */
  keysUnder(prefix: string): string[] {
    return [...this.rules.keys()].filter((k) => k.startsWith(prefix));
  }

  /** A checkpoint tensor as stored (its scaled-fp8 scale attached). */
  private async readRaw(key: string): Promise<RawTensor> {
    const name = this.prefix + key;
    const info = this.reader.tensors.get(name)!;
    const raw: RawTensor = { dtype: info.dtype, shape: info.shape, bytes: await this.reader.readBytes(name) };
    const sk = this.scales.get(key);
    return sk === undefined ? raw : { ...raw, scale: await this.readScale(sk) };
  }

  private async readScale(key: string): Promise<number> {
    const info = this.reader.tensors.get(this.prefix + key)!;
    return toFloat32(info.dtype, await this.reader.readBytes(this.prefix + key))[0]!;
  }

  /** Stored size of the checkpoint tensor `key`, in bytes. */
  private byteSize(key: string): number {
    const info = this.reader.tensors.get(this.prefix + key)!;
    return info.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[info.dtype];
  }

  /** The bytes of `key`: the prefetched read when there is one, else a new read. */
  private raw(key: string): Promise<RawTensor> {
    const p = this.pending.get(key);
    if (p) {
      this.pending.delete(key);
      return p;
    }
    const q = this.readRaw(key);
    q.catch(() => undefined); // awaited by the caller; this only keeps an abandoned read from being "unhandled"
    return q;
  }

  private build(key: string, parts: readonly RawTensor[]): tf.Tensor {
    const rule = this.rules.get(key)!;
    try {
      return this.executor.build(rule, parts, this.placements.get(key)!);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      this.fail(`cannot build ${key} from ${rule.from.join(', ')}: ${e.message}`);
    }
  }

  /** Starts reading the bytes of the module under `prefix` (the one wanted next); drops older prefetches. */
  prefetch(prefix: string): void {
    if (!this.prefetching) return;
    const names = this.keysUnder(prefix).filter((k) => !this.kept.has(k)).flatMap((k) => this.rules.get(k)!.from);
    const keep = new Set(names);
    for (const k of this.pending.keys()) if (!keep.has(k)) this.pending.delete(k); // one module ahead, no more
    for (const k of names) {
      if (this.pending.has(k)) continue;
      const q = this.readRaw(k);
      q.catch(() => undefined); // a failed prefetch surfaces when get() awaits it
      this.pending.set(k, q);
    }
  }

  /** The model tensors under `prefix`, keyed by the rest of the key; `onTensor(done, total)` after each one is built. */
  async get(prefix: string, onTensor?: (done: number, total: number) => void): Promise<Weights> {
    const keys = this.keysUnder(prefix);
    // Reads run ahead of the builds by at most readAheadBytes (a whole block fits; loading a whole model does not
    // hold its checkpoint's bytes at once: before, every read started here, 22 GB of RSS for fp8's 12 GB).
    const sources = [...new Set(keys.filter((k) => !this.kept.has(k)).flatMap((k) => this.rules.get(k)!.from))];
    const order = new Map(sources.map((src, i) => [src, i]));
    const reads = new Map<string, Promise<RawTensor>>();
    let started = 0;
    let aheadBytes = 0;
    const readUpTo = (last: number) => {
      while (started < sources.length && (started <= last || aheadBytes < this.readAheadBytes)) {
        const src = sources[started++]!;
        reads.set(src, this.raw(src));
        aheadBytes += this.byteSize(src);
      }
    };
    const out: Weights = {};
    const made: tf.Tensor[] = [];
    try {
      for (const k of keys) {
        let t = this.kept.get(k);
        if (!t) {
          const from = this.rules.get(k)!.from;
          readUpTo(Math.max(...from.map((src) => order.get(src)!)));
          const parts = await Promise.all(from.map((src) => reads.get(src)!));
          for (const src of from) {
            reads.delete(src); // let the bytes go once used
            aheadBytes -= this.byteSize(src);
          }
          readUpTo(-1);
          t = this.build(k, parts);
          made.push(t);
        }
        out[k.slice(prefix.length)] = t;
        onTensor?.(Object.keys(out).length, keys.length);
      }
    } catch (e) {
      tf.dispose(made);
      throw e;
    }
    if (this.keeps) for (const k of keys) this.kept.set(k, out[k.slice(prefix.length)]!);
    return out;
  }

  /** Resident weights already built (`loadAll`): the tensors under `prefix`, keyed by the rest of the key. */
  loaded(prefix: string): Weights {
    const out: Weights = {};
    for (const k of this.keysUnder(prefix)) {
      const t = this.kept.get(k);
      if (!t) throw new Error(`loaded: ${k} is not built yet (resident weights: call loadAll first)`);
      out[k.slice(prefix.length)] = t;
    }
    return out;
  }

  /** Done with tensors from `get`: streamed disposes them, resident keeps them. */
  release(_prefix: string, weights: Weights): void {
    if (this.keeps) return;
    tf.dispose(Object.values(weights));
  }

  /** Resident (and fp8): builds every tensor now (reading the whole checkpoint once); `onTensor(done, total)` after each. */
  async loadAll(onTensor?: (done: number, total: number) => void): Promise<void> {
    if (!this.keeps) throw new Error('loadAll: only resident weights keep what they build');
    await this.get('', onTensor);
  }

  /** `loadAll` for a reader that has the bytes at hand (memoryCheckpoint). */
  loadAllSync(): void {
    if (!this.keeps) throw new Error('loadAllSync: only resident weights keep what they build');
    const sync = this.reader.readBytesSync?.bind(this.reader);
    if (!sync) throw new Error(`loadAllSync: ${this.reader.path} cannot be read synchronously`);
    const made: string[] = [];
    try {
      for (const [key, rule] of this.rules) {
        if (this.kept.has(key)) continue;
        if (rule.from.some((src) => this.scales.has(src))) throw new Error('loadAllSync: scaled fp8 needs loadAll');
        const parts = rule.from.map((src): RawTensor => {
          const info = this.reader.tensors.get(this.prefix + src)!;
          return { dtype: info.dtype, shape: info.shape, bytes: sync(this.prefix + src) };
        });
        this.kept.set(key, this.build(key, parts));
        made.push(key);
      }
    } catch (e) {
      for (const key of made) {
        this.kept.get(key)!.dispose();
        this.kept.delete(key);
      }
      throw e;
    }
  }

  /** Rows `ids` of the [V, D] table `key` (a model key) as float32, row-major [ids.length, D], read by byte range. */
  async rows(key: string, ids: ArrayLike<number>): Promise<Float32Array> {
    const rule = this.rules.get(key);
    if (!rule || rule.op !== 'rename') throw new Error(`rows: ${key} is not a table of the ${this.layout.model}`);
    const name = this.prefix + rule.from[0]!;
    const info = this.reader.tensors.get(name)!;
    const [V, D] = info.shape as [number, number];
    const rowBytes = D * DTYPE_SIZES[info.dtype];
    const scale = this.scales.has(rule.from[0]!) ? await this.readScale(this.scales.get(rule.from[0]!)!) : undefined;
    const out = new Float32Array(ids.length * D);
    const cache = new Map<number, Float32Array>();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new this.layout.error(`token id ${id} is outside ${key} [${V}, ${D}]`);
      let row = cache.get(id);
      if (!row) {
        row = toFloat32(info.dtype, (await this.reader.readRange(name, id * rowBytes, (id + 1) * rowBytes)).slice());
        if (scale !== undefined) for (let j = 0; j < row.length; j++) row[j] = Math.fround(row[j]! * scale);
        this.rowBytesRead += rowBytes;
        cache.set(id, row);
      }
      out.set(row, i * D);
    }
    return out;
  }

  /** Whether built tensors are kept (resident and fp8) rather than freed after each use (streamed). */
  get keeps(): boolean {
    return this.residency !== 'streamed';
  }

  /** Tensors kept on the device (resident). */
  get residentTensors(): number {
    return this.kept.size;
  }

  /** Frees what was kept, drops prefetched bytes (reads in flight finish and are discarded) and the scratch buffer. */
  dispose(): void {
    for (const t of this.kept.values()) t.dispose();
    this.kept.clear();
    this.pending.clear();
    this.executor.clear();
  }
}
