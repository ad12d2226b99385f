/**
 * What the text encoders need from their weights: named float32 tensors for one module at a time, and rows of an
 * embedding table gathered on the host (so a 32128 x 4096 table is never uploaded whole). Pure interface: the
 * checkpoint-backed implementation (streamed or resident) is in ../text-encoders.ts. Shared by t5/ and clip/.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';

export type Weights = Record<string, tf.Tensor>;

export interface TextEncoderWeights {
  /** Float32 tensors for these keys (model key names, e.g. `encoder.block.3.layer.0.SelfAttention.q.weight`). */
  load(keys: readonly string[]): Promise<Weights>;
  /** Done with tensors from `load`: a streamed source disposes them, a resident one keeps them. */
  release(weights: Weights): void;
  /** A hint that `keys` are loaded next: a streaming source may start reading them now. */
  prefetch?(keys: readonly string[]): void;
  /** Rows `ids` of the [V, D] table `key` as float32, row-major [ids.length, D]. */
  rows(key: string, ids: ArrayLike<number>): Promise<Float32Array>;
}

/** Bad input to an encoder (ids out of range, ragged batch, too long): a user error, not a bug. */
export class TextEncoderInputError extends FluxError {
  constructor(message: string) {
    super('TEXT_ENCODER_INPUT', message);
    this.name = 'TextEncoderInputError';
  }
}

/** The tensors of `w` under `prefix`, keyed by the rest of the key (no copies). */
export function scope(w: Weights, prefix: string): Weights {
  const out: Weights = {};
  for (const [k, t] of Object.entries(w)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = t;
  return out;
}

/** Checks a batch of token id rows: same length, integers in [0, vocab). Returns [B, L] and the flat ids. */
export function flattenIds(ids: readonly (readonly number[])[], vocabSize: number, maxLength = Infinity): { B: number; L: number; flat: Int32Array } {
  const B = ids.length;
  if (B === 0) throw new TextEncoderInputError('no token id rows given (batch of 0)');
  const L = ids[0].length;
  if (L === 0) throw new TextEncoderInputError('token id rows are empty');
  if (L > maxLength) throw new TextEncoderInputError(`token id rows have ${L} ids, more than the model's ${maxLength} positions; truncate them`);
  const flat = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    if (ids[b].length !== L) throw new TextEncoderInputError(`token id rows must have one length (padded), row 0 has ${L} and row ${b} has ${ids[b].length}`);
    for (let i = 0; i < L; i++) {
      const v = ids[b][i];
      if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
        throw new TextEncoderInputError(`token id ${v} at row ${b}, position ${i} is outside the vocabulary [0, ${vocabSize}); was it made by the matching tokenizer?`);
      }
      flat[b * L + i] = v;
    }
  }
  return { B, L, flat };
}
