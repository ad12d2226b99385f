/**
 * WeightSources over a checkpoint reader (a safetensors file or a sharded set, weights/checkpoint.ts), in BFL or
 * diffusers layout. The reader does the I/O; these only pick keys, convert names and make tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  BFL_KEY_PREFIX,
  detectTransformerFormat,
  diffusersToBfl,
  keyRulesUnder,
  TransformerKeyError,
  transformerKeyRules,
  type TransformerFormat,
} from '../weights/transformer-keys.ts';
import { fluxParamSpec, type FluxParams } from './flux.ts';
import { checkWeights, listKeys, prepareWeights, preTransposedTensor, type Weights, type WeightSource } from './weights.ts';

/** What a source needs from a checkpoint (weights/checkpoint.ts `TensorReader` fits). */
export interface WeightReader {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, { shape: readonly number[]; dtype?: string }>;
  readFloat32(name: string): Promise<Float32Array>;
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

async function readTensor(reader: WeightReader, name: string, transposeLinear = false): Promise<tf.Tensor> {
  const info = reader.tensors.get(name)!;
  const data = await reader.readFloat32(name);
  if (transposeLinear && info.shape.length === 2 && name.endsWith('weight')) return preTransposedTensor(data, info.shape[0]!, info.shape[1]!);
  return tf.tensor(data, [...info.shape], 'float32');
}

/**
 * Streams one module at a time: `get(prefix)` reads that module's tensors (converting diffusers names and
 * layouts by the key table), `release` disposes them. Float32 on the device only for the module in use.
 * The constructor checks the whole key set (and, for BFL files, every shape) before any data is read.
 */
export class StreamedWeights implements WeightSource {
  readonly format: TransformerFormat;
  private readonly bflPrefix: string;

  readonly reader: WeightReader;

  constructor(
    reader: WeightReader,
    readonly layout: FluxParams,
  ) {
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

  async get(prefix: string): Promise<Weights> {
    const out: Weights = {};
    try {
      if (this.format === 'bfl') {
        const full = this.bflPrefix + prefix;
        for (const k of this.reader.tensors.keys()) if (k.startsWith(full)) out[k.slice(full.length)] = await readTensor(this.reader, k, true);
        return prepareWeights(out); // already [in, out]: nothing left to transpose
      }
      const rules = keyRulesUnder(prefix, this.layout);
      const src: Weights = {};
      for (const r of rules) for (const k of r.diffusers) if (this.reader.tensors.has(k)) src[k] = await readTensor(this.reader, k);
      try {
        const bfl = diffusersToBfl(src, rules);
        for (const [k, t] of Object.entries(bfl)) out[k.slice(prefix.length)] = t;
      } catch (e) {
        tf.dispose(Object.values(src));
        throw e;
      }
      return prepareWeights(out);
    } catch (e) {
      tf.dispose(Object.values(out));
      throw e;
    }
  }

  release(_prefix: string, weights: Weights): void {
    tf.dispose(Object.values(weights));
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
