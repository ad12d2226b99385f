/**
 * Parameter specs and the strict weight walk shared by the transformer modules.
 *
 * Every module lists its parameters as `{ key: shape }` (keys relative to the module, named as the BFL checkpoint),
 * and is built from a `Weights` record holding exactly those tensors. A `WeightSource` hands out one module's
 * tensors by prefix, so the forward can fetch a block just before it runs and let it go right after (streaming),
 * or keep everything resident.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { isPreTransposed, markPreTransposed } from '../nn/linear.ts';

export type Weights = Record<string, tf.Tensor>;
export type ParamSpec = Record<string, readonly number[]>;

/** Where the transformer's weights come from, one module (prefix such as `double_blocks.3.`) at a time. */
export interface WeightSource {
  /** The tensors whose BFL key starts with `prefix`, keyed by the rest of the key. */
  get(prefix: string): Promise<Weights>;
  /** Called when the module built from `get(prefix)` is done; a streaming source disposes them here. */
  release?(prefix: string, weights: Weights): void;
  /** A hint that `prefix` is the module wanted next: a streaming source may start reading it now. */
  prefetch?(prefix: string): void;
}

export class TransformerWeightsError extends FluxError {
  constructor(message: string) {
    super('TRANSFORMER_WEIGHTS', message);
    this.name = 'TransformerWeightsError';
  }
}

export function listKeys(keys: readonly string[], limit = 8): string {
  const shown = keys.slice(0, limit).join(', ');
  return keys.length > limit ? `${shown} and ${keys.length - limit} more` : shown;
}

/** Prefixes every key of `spec`. */
export function prefixed(prefix: string, spec: ParamSpec): ParamSpec {
  const out: Record<string, readonly number[]> = {};
  for (const [k, s] of Object.entries(spec)) out[prefix + k] = s;
  return out;
}

/** `{weight: [out, in], bias: [out]}` under `prefix` ('' = no prefix). */
export function linearSpec(prefix: string, inF: number, outF: number, bias = true): ParamSpec {
  const at = prefix ? `${prefix}.` : '';
  const s: Record<string, readonly number[]> = { [`${at}weight`]: [outF, inF] };
  if (bias) s[`${at}bias`] = [outF];
  return s;
}

/**
 * The strict walk: `weights` must hold exactly the keys of `spec` with exactly those shapes.
 * Throws a TransformerWeightsError naming every missing, unexpected and mis-shaped key.
 */
export function checkWeights(spec: ParamSpec, weights: Record<string, { shape: readonly number[] }>, where: string): void {
  const missing: string[] = [];
  const shapes: string[] = [];
  for (const [k, shape] of Object.entries(spec)) {
    const t = weights[k];
    if (t === undefined) {
      missing.push(k);
      continue;
    }
    const got = isPreTransposed(t) ? [...t.shape].reverse() : t.shape; // compared in checkpoint layout
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      shapes.push(`${k} is [${got.join(', ')}], expected [${shape.join(', ')}]`);
    }
  }
  const unexpected = Object.keys(weights).filter((k) => !(k in spec));
  if (missing.length + shapes.length + unexpected.length === 0) return;
  const parts: string[] = [];
  if (missing.length) parts.push(`missing ${missing.length} key(s): ${listKeys(missing)}`);
  if (unexpected.length) parts.push(`unexpected ${unexpected.length} key(s): ${listKeys(unexpected)}`);
  if (shapes.length) parts.push(`wrong shape: ${listKeys(shapes, 4)}`);
  throw new TransformerWeightsError(
    `${where} does not match the transformer config: ${parts.join('; ')}. ` +
      'Check that the checkpoint is a FLUX.1 transformer of the variant you asked for (schnell or dev).',
  );
}

/**
 * Every Linear weight (a 2-D `*.weight`; the transformer's norms are `*.scale`) transposed once to [in, out], so
 * `x W^T` is a plain matMul: with transposeB, tfjs-node's MatMul runs 2-4x slower on these shapes (bench: 256 x 3072
 * x 12288 at 40 vs 171 GFLOP/s). Takes ownership: the [out, in] originals are disposed. Checks and Linears recognise
 * the transposed tensors, so error messages still speak of checkpoint shapes.
 */
export function prepareWeights(w: Weights): Weights {
  const out: Weights = {};
  for (const [k, t] of Object.entries(w)) {
    if (t.rank === 2 && k.endsWith('weight') && !isPreTransposed(t)) {
      const tt = markPreTransposed(tf.transpose(t));
      t.dispose();
      out[k] = tt;
    } else out[k] = t;
  }
  return out;
}

/** The tensors under `prefix`, keyed by the rest of the key (no copies). */
export function scope(w: Weights, prefix: string): Weights {
  const out: Weights = {};
  for (const [k, t] of Object.entries(w)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = t;
  return out;
}

/**
 * All weights held in memory (keys in BFL names). `get` returns views of the same tensors, `release` keeps them;
 * `dispose` frees them all.
 */
export class ResidentWeights implements WeightSource {
  readonly tensors: Weights;
  /** Takes ownership of `tensors`; Linear weights are transposed once here (prepareWeights). */
  constructor(tensors: Weights) {
    this.tensors = prepareWeights(tensors);
  }
  async get(prefix: string): Promise<Weights> {
    return scope(this.tensors, prefix);
  }
  release(): void {}
  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
  }
}
