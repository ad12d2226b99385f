/**
 * Loading the FLUX text encoders from a diffusers folder (`text_encoder/` = CLIPTextModel, `text_encoder_2/` =
 * T5EncoderModel, each a config.json plus one .safetensors file or shards + index), the checkpoint-backed weight
 * source (streamed or resident) and the prompt-embedding cache.
 *
 * Streamed (default): each layer's tensors are read from the checkpoint, converted to float32, uploaded, used and
 * disposed, so only one layer is on the device (T5-XXL: ~0.8 GB float32 per block instead of 19 GB).
 * Resident: each tensor is uploaded once and kept until `close()`. Both give identical outputs.
 * Either way, embedding rows are gathered on the host by byte range from the file: the 32128 x 4096 T5 table is
 * never uploaded nor converted whole.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { CLIPTextModel } from '../clip/clip-text-model.ts';
import { clipTextConfigFromJson, t5ConfigFromJson, type ClipTextConfig, type T5Config } from '../transformer/config.ts';
import { T5EncoderModel } from '../t5/t5-encoder-model.ts';
import type { TextEncoderWeights, Weights } from './token-ids.ts';
import { clipTextArchitecture, t5EncoderArchitecture, type Architecture } from '../weights/architectures.ts';
import { openCheckpoint, type Checkpoint } from '../weights/checkpoint.ts';
import { compareArchitecture } from '../weights/detect.ts';
import type { Residency } from '../runtime/backend.ts';
import { DTYPE_SIZES, toFloat32 } from '../weights/dtypes.ts';
import { SafetensorsFile, type TensorInfo } from '../weights/safetensors.ts';
import type { RawTensor } from '../weights/assemble.ts';
import { WeightUploader } from '../weights/executor.ts';

export { CLIPTextModel, T5EncoderModel };
export type { TextEncoderWeights };


export class TextEncoderWeightsError extends FluxError {
  constructor(message: string) {
    super('TEXT_ENCODER_WEIGHTS', message);
    this.name = 'TextEncoderWeightsError';
  }
}

function listKeys(keys: readonly string[], limit = 8): string {
  const shown = keys.slice(0, limit).join(', ');
  return keys.length > limit ? `${shown} and ${keys.length - limit} more` : shown;
}

/**
 * The strict check: the checkpoint's keys (after `prefix`) must be exactly the architecture's, with its shapes
 * (optional keys such as T5's tied `encoder.embed_tokens.weight` accepted when present and well shaped).
 */
export function checkTextEncoderKeys(tensors: ReadonlyMap<string, { shape: readonly number[] }>, arch: Architecture, prefix: string, where: string): void {
  const stripped = new Map<string, { shape: readonly number[] }>();
  for (const [k, v] of tensors) stripped.set(prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k, v);
  const diff = compareArchitecture(stripped, arch);
  const parts: string[] = [];
  if (diff.missing.length) parts.push(`missing ${diff.missing.length} key(s): ${listKeys(diff.missing)}`);
  if (diff.unexpected.length) parts.push(`unexpected ${diff.unexpected.length} key(s): ${listKeys(diff.unexpected)}`);
  if (diff.mismatched.length) {
    parts.push(`wrong shape: ${listKeys(diff.mismatched.map((m) => `${m.key} is [${m.actual.join(', ')}], expected [${m.expected.join(', ')}]`), 4)}`);
  }
  if (parts.length) {
    throw new TextEncoderWeightsError(`${where} does not match its config.json (${arch.format}): ${parts.join('; ')}. Check that the folder holds the complete, matching text encoder.`);
  }
}

/** A TextEncoderWeights over a checkpoint (one file or shards): strict key check on open, rows by byte range. */
/** The Linear layers' weights of T5 (`q k v o wi wi_0 wi_1 wo`) and CLIP (`q_proj k_proj v_proj out_proj fc1 fc2`). */
const LINEAR_WEIGHT = /(?:^|\.)(?:q|k|v|o|wi|wi_0|wi_1|wo|q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$/;

export class CheckpointTextWeights implements TextEncoderWeights {
  private readonly resident = new Map<string, tf.Tensor>();
  private readonly uploader = new WeightUploader();
  /** Key -> its bytes being read (the prefetched layer only). */
  private readonly pending = new Map<string, Promise<RawTensor>>();
  private readonly files = new Map<string, Promise<{ fh: FileHandle; dataStart: number }>>();
  /** Bytes read for embedding rows so far (tests and benchmarks read it). */
  rowBytesRead = 0;

  constructor(
    readonly checkpoint: Checkpoint,
    readonly architecture: Architecture,
    /** Key prefix in the file (CLIP files from transformers 4.x: `text_model.`). */
    readonly prefix: string,
    readonly residency: Residency = 'streamed',
  ) {
    checkTextEncoderKeys(checkpoint.tensors, architecture, prefix, checkpoint.path);
  }

  private info(key: string): TensorInfo {
    const t = this.checkpoint.tensors.get(this.prefix + key);
    if (!t) throw new TextEncoderWeightsError(`${this.checkpoint.path} has no tensor ${JSON.stringify(this.prefix + key)}`);
    return t;
  }

  /** The bytes of `key`: the prefetched read when there is one, else a new read. */
  private raw(key: string): Promise<RawTensor> {
    const p = this.pending.get(key);
    if (p) {
      this.pending.delete(key);
      return p;
    }
    return this.startRead(key);
  }

  private startRead(key: string): Promise<RawTensor> {
    const info = this.info(key);
    const q = this.checkpoint.readBytes(this.prefix + key).then((bytes): RawTensor => ({ dtype: info.dtype, shape: info.shape, bytes }));
    q.catch(() => undefined); // awaited by load(); this only keeps a failed, abandoned prefetch from being "unhandled"
    return q;
  }

  /** Starts reading `keys` (the next layer's) while the current layer computes; drops older prefetches. */
  prefetch(keys: readonly string[]): void {
    if (this.residency === 'resident') return; // read once, on first use
    const keep = new Set(keys);
    for (const k of this.pending.keys()) if (!keep.has(k)) this.pending.delete(k);
    for (const k of keys) {
      if (this.pending.has(k) || !this.checkpoint.tensors.has(this.prefix + k)) continue;
      this.pending.set(k, this.startRead(k)); // a failed read surfaces when load() awaits it
    }
  }

  async load(keys: readonly string[]): Promise<Weights> {
    const out: Weights = {};
    const reads = new Map(keys.filter((k) => !this.resident.has(k)).map((k) => [k, this.raw(k)] as const));
    try {
      for (const key of keys) {
        const kept = this.resident.get(key);
        if (kept) {
          out[key] = kept;
          continue;
        }
        const raw = await reads.get(key)!;
        reads.delete(key);
        // Linear weights are transposed on the host to [in, out]: a plain matMul (nn/linear.ts), 3-4x faster on tfjs-node.
        const t = this.uploader.tensor([raw], 'rename', raw.shape.length === 2 && LINEAR_WEIGHT.test(key));
        if (this.residency === 'resident') this.resident.set(key, t);
        out[key] = t;
      }
    } catch (e) {
      if (this.residency !== 'resident') tf.dispose(Object.values(out));
      throw e;
    }
    return out;
  }

  release(weights: Weights): void {
    if (this.residency === 'resident') return;
    for (const t of Object.values(weights)) t.dispose();
  }

  private file(path: string): Promise<{ fh: FileHandle; dataStart: number }> {
    let f = this.files.get(path);
    if (!f) {
      f = (async () => {
        const st = await SafetensorsFile.open(path); // header only: gives the data start
        const dataStart = st.dataStart;
        await st.close();
        return { fh: await open(path, 'r'), dataStart };
      })();
      this.files.set(path, f);
    }
    return f;
  }

  async rows(key: string, ids: ArrayLike<number>): Promise<Float32Array> {
    const info = this.info(key);
    if (info.shape.length !== 2) throw new TextEncoderWeightsError(`${key} is [${info.shape.join(', ')}], not an embedding table [V, D]`);
    const [V, D] = info.shape;
    const rowBytes = D * DTYPE_SIZES[info.dtype];
    const { fh, dataStart } = await this.file(this.checkpoint.fileOf(this.prefix + key));
    const out = new Float32Array(ids.length * D);
    const cache = new Map<number, Float32Array>();
    const buf = new Uint8Array(rowBytes);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new TextEncoderWeightsError(`token id ${id} is outside ${key} [${V}, ${D}]`);
      let row = cache.get(id);
      if (!row) {
        const pos = dataStart + info.dataOffsets[0] + id * rowBytes;
        const { bytesRead } = await fh.read(buf, 0, rowBytes, pos);
        if (bytesRead !== rowBytes) throw new TextEncoderWeightsError(`${this.checkpoint.fileOf(this.prefix + key)}: short read of ${key} row ${id} (file truncated?)`);
        this.rowBytesRead += rowBytes;
        row = toFloat32(info.dtype, buf.slice());
        cache.set(id, row);
      }
      out.set(row, i * D);
    }
    return out;
  }

  /** Tensors kept on the device (resident mode). */
  get residentTensors(): number {
    return this.resident.size;
  }

  async close(): Promise<void> {
    for (const t of this.resident.values()) t.dispose();
    this.resident.clear();
    this.pending.clear();
    this.uploader.clear();
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.all(files.map(async (f) => (await f).fh.close()));
    await this.checkpoint.close();
  }
}

export interface LoadOptions {
  residency?: Residency;
}

export interface LoadedTextEncoder<M, C> {
  model: M;
  config: C;
  weights: CheckpointTextWeights;
  close(): Promise<void>;
}

async function readConfig(dir: string): Promise<unknown> {
  const path = join(dir, 'config.json');
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (cause) {
    throw new TextEncoderWeightsError(`${path}: cannot read (${(cause as NodeJS.ErrnoException).code ?? String(cause)}); pass the text encoder folder (text_encoder/ or text_encoder_2/ of a diffusers FLUX.1 download)`);
  }
  try {
    return JSON.parse(raw);
  } catch {
    throw new TextEncoderWeightsError(`${path}: not valid JSON`);
  }
}

async function withCheckpoint<T>(dir: string, build: (ckpt: Checkpoint) => T): Promise<T> {
  const ckpt = await openCheckpoint(dir);
  try {
    return build(ckpt);
  } catch (e) {
    await ckpt.close().catch(() => undefined);
    throw e;
  }
}

/** `text_encoder_2/`: T5Config config.json + model shards (+ index). */
export async function loadT5EncoderModel(dir: string, opts: LoadOptions = {}): Promise<LoadedTextEncoder<T5EncoderModel, T5Config>> {
  const config = t5ConfigFromJson(await readConfig(dir), join(dir, 'config.json'));
  return withCheckpoint(dir, (ckpt) => {
    const weights = new CheckpointTextWeights(ckpt, t5EncoderArchitecture(config), '', opts.residency);
    return { model: new T5EncoderModel(config, weights), config, weights, close: () => weights.close() };
  });
}

/** `text_encoder/`: CLIPTextConfig config.json + model.safetensors (keys with or without `text_model.`). */
export async function loadClipTextModel(dir: string, opts: LoadOptions = {}): Promise<LoadedTextEncoder<CLIPTextModel, ClipTextConfig>> {
  const config = clipTextConfigFromJson(await readConfig(dir), join(dir, 'config.json'));
  return withCheckpoint(dir, (ckpt) => {
    const keys = [...ckpt.tensors.keys()];
    const prefix = keys.length > 0 && keys.every((k) => k.startsWith('text_model.')) ? 'text_model.' : '';
    const weights = new CheckpointTextWeights(ckpt, clipTextArchitecture(config), prefix, opts.residency);
    return { model: new CLIPTextModel(config, weights), config, weights, close: () => weights.close() };
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Prompt-embedding cache
// ---------------------------------------------------------------------------------------------------------------------

/** What the transformer needs from the text encoders, on the host. */
export interface PromptEmbeddings {
  /** T5 last_hidden_state [1, L, 4096] ("prompt_embeds"). */
  promptEmbeds: Float32Array;
  promptEmbedsShape: [number, number, number];
  /** CLIP pooler_output [1, 768] ("pooled_prompt_embeds"). */
  pooled: Float32Array;
  pooledShape: [number, number];
}

export interface PromptKey {
  prompt: string;
  variant: string;
  t5MaxLength: number;
  clipMaxLength: number;
}

/** LRU over prompt embeddings (host Float32Arrays, never tensors), keyed by prompt, variant and lengths. */
export class PromptEmbeddingCache {
  private readonly map = new Map<string, PromptEmbeddings>();
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(readonly capacity = 8) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new FluxError('INVALID_OPTION', `prompt cache capacity must be an integer >= 0, got ${capacity}`);
  }

  static key(k: PromptKey): string {
    return JSON.stringify([k.variant, k.t5MaxLength, k.clipMaxLength, k.prompt]);
  }

  get size(): number {
    return this.map.size;
  }

  get(k: PromptKey): PromptEmbeddings | undefined {
    const key = PromptEmbeddingCache.key(k);
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key); // most recently used goes last
    this.map.set(key, v);
    return v;
  }

  set(k: PromptKey, v: PromptEmbeddings): void {
    if (this.capacity === 0) return;
    const key = PromptEmbeddingCache.key(k);
    this.map.delete(key);
    this.map.set(key, v);
    while (this.map.size > this.capacity) {
      this.map.delete(this.map.keys().next().value as string);
      this.evictions++;
    }
  }

  clear(): void {
    this.map.clear();
  }
}

/** Token ids for each encoder, padded / truncated to `maxLength` as FLUX's pipeline asks its tokenizers. */
export interface PromptTokenizers {
  clip(prompt: string, maxLength: number): number[] | Promise<number[]>;
  t5(prompt: string, maxLength: number): number[] | Promise<number[]>;
}

export interface EncodeOptions {
  /** schnell 256, dev 512 (diffusers FluxPipeline max_sequence_length). */
  t5MaxLength?: number;
  clipMaxLength?: number;
  variant?: string;
}

/** Both encoders plus tokenizers and the cache: `encode(prompt)` -> PromptEmbeddings on the host. */
export class TextEncoders {
  constructor(
    readonly clip: CLIPTextModel,
    readonly t5: T5EncoderModel,
    readonly tokenizers: PromptTokenizers,
    readonly cache: PromptEmbeddingCache = new PromptEmbeddingCache(),
    private readonly closers: (() => Promise<void>)[] = [],
  ) {}

  /** `root/text_encoder/` and `root/text_encoder_2/` of a diffusers FLUX.1 folder. */
  static async open(root: string, tokenizers: PromptTokenizers, opts: LoadOptions & { cacheCapacity?: number } = {}): Promise<TextEncoders> {
    const clip = await loadClipTextModel(join(root, 'text_encoder'), opts);
    try {
      const t5 = await loadT5EncoderModel(join(root, 'text_encoder_2'), opts);
      return new TextEncoders(clip.model, t5.model, tokenizers, new PromptEmbeddingCache(opts.cacheCapacity ?? 8), [clip.close, t5.close]);
    } catch (e) {
      await clip.close();
      throw e;
    }
  }

  async encode(prompt: string, opts: EncodeOptions = {}): Promise<PromptEmbeddings> {
    const key: PromptKey = {
      prompt,
      variant: opts.variant ?? 'schnell',
      t5MaxLength: opts.t5MaxLength ?? 256,
      clipMaxLength: opts.clipMaxLength ?? this.clip.config.maxPositionEmbeddings,
    };
    const hit = this.cache.get(key);
    if (hit) return hit;
    const clipIds = await this.tokenizers.clip(prompt, key.clipMaxLength);
    const t5Ids = await this.tokenizers.t5(prompt, key.t5MaxLength);
    const { lastHiddenState, pooledOutput } = await this.clip.forward([clipIds]);
    lastHiddenState.dispose();
    const pooled = (await pooledOutput.data()) as Float32Array;
    pooledOutput.dispose();
    const t5Out = await this.t5.forward([t5Ids]);
    const promptEmbeds = (await t5Out.data()) as Float32Array;
    const shape = t5Out.shape as [number, number, number];
    t5Out.dispose();
    const v: PromptEmbeddings = { promptEmbeds, promptEmbedsShape: shape, pooled, pooledShape: [1, pooled.length] };
    this.cache.set(key, v);
    return v;
  }

  async close(): Promise<void> {
    for (const c of this.closers) await c();
  }
}
