/**
 * What T5 and CLIP share: their typed errors, and the check of token id rows (same length, in the vocabulary)
 * both encoders run before gathering embedding rows.
 */
import { FluxError } from '@flux-ts/core';
import { WeightsError } from '../weights/validate.ts';

/** A text encoder checkpoint that does not match its config.json (missing, unexpected or mis-shaped keys). */
export class TextEncoderWeightsError extends WeightsError {
  constructor(message: string) {
    super('TEXT_ENCODER_WEIGHTS', message);
    this.name = 'TextEncoderWeightsError';
  }
}

/** Bad input to an encoder (ids out of range, ragged batch, too long): a user error, not a bug. */
export class TextEncoderInputError extends FluxError {
  constructor(message: string) {
    super('TEXT_ENCODER_INPUT', message);
    this.name = 'TextEncoderInputError';
  }
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
