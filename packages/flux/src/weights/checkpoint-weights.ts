/**
 * WeightSources over a checkpoint reader (a safetensors file or a sharded set, weights/checkpoint.ts), in BFL or
 * diffusers layout. The reader does the I/O; these only pick keys, convert names and make tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type AssembleOp, type RawTensor } from './assemble.ts';
import { WeightUploader } from './executor.ts';
import { DTYPE_SIZES, type Dtype } from './dtypes.ts';
import {
  BFL_KEY_PREFIX,
  detectTransformerFormat,
  keyRulesUnder,
  TransformerKeyError,
  transformerKeyRules,
  type TransformerFormat,
} from '../transformer/keys.ts';
import { fluxParamSpec, type FluxParams } from '../transformer/flux.ts';
import { checkWeights, listKeys, type Weights, type WeightSource } from './spec.ts';

/** What a source needs from a checkpoint (weights/checkpoint.ts `TensorReader` fits). */
export interface WeightReader {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, { shape: readonly number[]; dtype?: string }>;
  readFloat32(name: string): Promise<Float32Array>;
  /** The bytes as stored (dtype in `tensors`): lets the streamed path decode, concatenate and transpose in one pass. */
  readBytes?(name: string): Promise<Uint8Array>;
}

/** ComfyUI "scaled fp8" marker key (an empty F8_E4M3 tensor), with or without the `model.diffusion_model.` prefix. */
export const SCALED_FP8_MARKER = 'scaled_fp8';
const SCALE_WEIGHT = '.scale_weight';
const SCALE_INPUT = '.scale_input';

/**
 * A checkpoint's weights dequantized to float32. Plain fp8 files (F8_E4M3 / F8_E5M2 weights, as the community
 * `flux1-schnell-fp8` files ship them) need nothing beyond the dtype table of the reader. ComfyUI "scaled fp8" files
 * add a `scaled_fp8` marker and, next to a Linear's `X.weight`, a scalar `X.scale_weight` (dequantized weight =
 * fp8 value x scale_weight, comfy/ops.py `scaled_fp8_ops`) and sometimes `X.scale_input` (the activation scale of an
 * fp8 matmul, unused when computing in float32). This view hides those keys and applies `scale_weight` on read.
 * Other quantization schemes (per-channel scales, `weight_scale`, `comfy_quant`, GGUF) stay unexpected keys.
 */
export class DequantizingReader implements WeightReader {
  readonly tensors: ReadonlyMap<string, { shape: readonly number[]; dtype?: string }>;
  /** weight key -> its scale_weight key */
  readonly scales: ReadonlyMap<string, string>;
  readonly scaled: boolean;

  constructor(readonly inner: WeightReader) {
    const tensors = new Map<string, { shape: readonly number[]; dtype?: string }>();
    const scales = new Map<string, string>();
    const bad: string[] = [];
    let marker = false;
    for (const [k, info] of inner.tensors) {
      if (k === SCALED_FP8_MARKER || k === BFL_KEY_PREFIX + SCALED_FP8_MARKER) {
        marker = true;
        continue;
      }
      if (k.endsWith(SCALE_INPUT)) continue;
      if (k.endsWith(SCALE_WEIGHT)) {
        const w = k.slice(0, -SCALE_WEIGHT.length) + '.weight';
        const n = info.shape.reduce((a, b) => a * b, 1);
        if (n !== 1) bad.push(`${k} has shape [${info.shape.join(', ')}], a per-tensor scalar expected`);
        else if (!inner.tensors.has(w)) bad.push(`${k} scales ${w}, which the file does not hold`);
        else scales.set(w, k);
        continue;
      }
      tensors.set(k, info);
    }
    if (bad.length) {
      throw new TransformerKeyError(`${inner.path}: unsupported scaled-fp8 layout: ${listKeys(bad, 4)}. Use an unscaled fp8, bf16 or fp32 checkpoint.`);
    }
    this.tensors = tensors;
    this.scales = scales;
    this.scaled = marker || scales.size > 0;
  }

  get path(): string {
    return this.inner.path;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const data = await this.inner.readFloat32(name);
    const sk = this.scales.get(name);
    if (sk === undefined) return data;
    const s = (await this.inner.readFloat32(sk))[0]!;
    for (let i = 0; i < data.length; i++) data[i] = Math.fround(data[i]! * s);
    return data;
  }
}

/** `reader` itself when it holds no scaled-fp8 keys, else a DequantizingReader over it. */
export function dequantizing(reader: WeightReader): WeightReader {
  if (reader instanceof DequantizingReader) return reader;
  const d = new DequantizingReader(reader);
  return d.scaled ? d : reader;
}

function formatOf(reader: WeightReader): TransformerFormat {
  const f = detectTransformerFormat(reader.tensors.keys());
  if (!f) {
    throw new TransformerKeyError(
      `${reader.path} holds no FLUX transformer weights (no double_blocks.* / transformer_blocks.* keys); pass the transformer checkpoint`,
    );
  }
  return f;
}

async function readTensor(reader: WeightReader, name: string): Promise<tf.Tensor> {
  const info = reader.tensors.get(name)!;
  return tf.tensor(await reader.readFloat32(name), [...info.shape], 'float32');
}

/** A tensor as stored (dtype, bytes, and the scaled-fp8 scale of a DequantizingReader), for `assemble`. */
export async function readRaw(reader: WeightReader, name: string): Promise<RawTensor> {
  const info = reader.tensors.get(name);
  if (!info) throw new TransformerKeyError(`${reader.path} holds no tensor ${name}`);
  if (reader instanceof DequantizingReader) {
    const raw = await readRaw(reader.inner, name);
    const sk = reader.scales.get(name);
    return sk === undefined ? raw : { ...raw, scale: (await reader.inner.readFloat32(sk))[0]! };
  }
  if (reader.readBytes && info.dtype !== undefined && Object.hasOwn(DTYPE_SIZES, info.dtype)) {
    return { dtype: info.dtype as Dtype, shape: info.shape, bytes: await reader.readBytes(name) };
  }
  const f = await reader.readFloat32(name);
  return { dtype: 'F32', shape: info.shape, bytes: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
}

/** One model tensor of a module: its key relative to the module and the checkpoint tensors it is built from. */
interface Target {
  readonly key: string;
  readonly sources: readonly string[];
  readonly op: AssembleOp;
}

export interface StreamedWeightsOptions {
  /**
   * Read the next module's bytes from disk while the current one computes (default true). Costs host memory for
   * one module as stored (a full-size double block: 0.68 GB in bf16, 0.34 GB in fp8); false reads on demand only.
   */
  prefetch?: boolean;
}

/**
 * Streams one module at a time: `get(prefix)` reads that module's tensors and builds each model tensor on the host
 * in one pass (weights/assemble.ts: decode, diffusers -> BFL concat / half swap, Linear weights transposed to
 * [in, out]), then uploads it; `release` disposes them. Float32 on the device only for the module in use.
 * `prefetch(prefix)` starts reading the bytes of the module that comes next, so disk time overlaps compute.
 * The constructor checks the whole key set (and, for BFL files, every shape) before any data is read.
 */
export class StreamedWeights implements WeightSource {
  readonly format: TransformerFormat;
  private readonly bflPrefix: string;
  private readonly prefetching: boolean;
  /** Checkpoint key -> its bytes being read (the prefetched module only). */
  private readonly pending = new Map<string, Promise<RawTensor>>();
  private readonly uploader = new WeightUploader();

  readonly reader: WeightReader;

  constructor(
    reader: WeightReader,
    readonly layout: FluxParams,
    options: StreamedWeightsOptions = {},
  ) {
    this.prefetching = options.prefetch ?? true;
    this.reader = dequantizing(reader);
    reader = this.reader;
    this.format = formatOf(reader);
    const first = reader.tensors.keys().next().value as string | undefined;
    this.bflPrefix = this.format === 'bfl' && first?.startsWith(BFL_KEY_PREFIX) ? BFL_KEY_PREFIX : '';
    if (this.format === 'bfl') {
      const infos: Record<string, { shape: readonly number[] }> = {};
      for (const [k, v] of reader.tensors) infos[k.startsWith(this.bflPrefix) ? k.slice(this.bflPrefix.length) : k] = v;
      checkWeights(fluxParamSpec(layout), infos, reader.path);
    } else {
      const wanted = new Set(transformerKeyRules(layout).flatMap((r) => r.diffusers));
      const missing = [...wanted].filter((k) => !reader.tensors.has(k));
      const unexpected = [...reader.tensors.keys()].filter((k) => !wanted.has(k));
      if (missing.length || unexpected.length) {
        const parts: string[] = [];
        if (missing.length) parts.push(`missing ${missing.length} key(s): ${listKeys(missing)}`);
        if (unexpected.length) parts.push(`unexpected ${unexpected.length} key(s): ${listKeys(unexpected)}`);
        throw new TransformerKeyError(
          `${reader.path} does not match the transformer config: ${parts.join('; ')}. ` +
            'Check that it is a FLUX.1 transformer of the variant you asked for (schnell or dev).',
        );
      }
    }
  }

  /** The model tensors under `prefix` (BFL names) and the checkpoint tensors each is built from. */
  private targets(prefix: string): Target[] {
    if (this.format === 'bfl') {
      const full = this.bflPrefix + prefix;
      return [...this.reader.tensors.keys()].filter((k) => k.startsWith(full)).map((k) => ({ key: k.slice(full.length), sources: [k], op: 'rename' as const }));
    }
    return keyRulesUnder(prefix, this.layout).map((r) => ({ key: r.bfl.slice(prefix.length), sources: r.diffusers, op: r.op }));
  }

  /** The bytes of `name`: the prefetched read when there is one, else a new read. */
  private raw(name: string): Promise<RawTensor> {
    const p = this.pending.get(name);
    if (p) {
      this.pending.delete(name);
      return p;
    }
    const q = readRaw(this.reader, name);
    q.catch(() => undefined); // awaited by the caller; this only keeps an abandoned read from being "unhandled"
    return q;
  }

  prefetch(prefix: string): void {
    if (!this.prefetching) return;
    const names = this.targets(prefix).flatMap((t) => t.sources);
    const keep = new Set(names);
    for (const k of this.pending.keys()) if (!keep.has(k)) this.pending.delete(k); // one module ahead, no more
    for (const k of names) {
      if (this.pending.has(k)) continue;
      const q = readRaw(this.reader, k);
      q.catch(() => undefined); // a failed prefetch surfaces when get() awaits it
      this.pending.set(k, q);
    }
  }

  async get(prefix: string): Promise<Weights> {
    const targets = this.targets(prefix);
    const raws = new Map<string, Promise<RawTensor>>();
    for (const t of targets) for (const k of t.sources) raws.set(k, this.raw(k));
    const out: Weights = {};
    try {
      for (const t of targets) {
        const parts = await Promise.all(t.sources.map((k) => raws.get(k)!));
        for (const k of t.sources) raws.delete(k); // let the bytes go once used
        const transpose = parts[0]!.shape.length === 2 && t.key.endsWith('weight');
        try {
          out[t.key] = this.uploader.tensor(parts, t.op, transpose);
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          throw new TransformerKeyError(`${this.reader.path}: cannot build ${prefix}${t.key} from ${t.sources.join(', ')}: ${e.message}`);
        }
      }
      return out;
    } catch (e) {
      tf.dispose(Object.values(out));
      throw e;
    }
  }

  release(_prefix: string, weights: Weights): void {
    tf.dispose(Object.values(weights));
  }

  /** Drops prefetched bytes (reads in flight finish and are discarded) and the scratch buffer. */
  clearPrefetch(): void {
    this.pending.clear();
    this.uploader.clear();
  }
}

/** Every tensor of the reader as float32 tensors, in the reader's own names (for `Flux.fromTensors`). */
export async function readAllWeights(reader: WeightReader): Promise<Weights> {
  reader = dequantizing(reader);
  const out: Weights = {};
  try {
    for (const k of reader.tensors.keys()) out[k] = await readTensor(reader, k);
  } catch (e) {
    tf.dispose(Object.values(out));
    throw e;
  }
  return out;
}
