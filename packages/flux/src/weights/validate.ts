/**
 * The one check of a checkpoint against a model: names AND shapes of every key, in the checkpoint's own names, with
 * one message format for missing, unexpected and mis-shaped keys. Runs on headers only (no tensor data).
 */
import { FluxError } from '@flux-ts/core';

/** A checkpoint that does not match its model. Each model has its own subclass and code. */
export class WeightsError extends FluxError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'WeightsError';
  }
}

/** Key -> shape of a checkpoint, plus the keys a file may also hold. */
export interface KeyTable {
  readonly tensors: ReadonlyMap<string, readonly number[]>;
  readonly optional?: ReadonlyMap<string, { readonly shape: readonly number[] }>;
}

export interface Mismatch {
  key: string;
  expected: number[];
  actual: number[];
}

export interface KeyDiff {
  /** Expected keys the checkpoint lacks (in the table's order). */
  missing: string[];
  /** Checkpoint keys the table does not have (in the file's order). */
  unexpected: string[];
  /** Keys present in both with different shapes. */
  mismatched: Mismatch[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A checkpoint's key -> shape map against the expected table. */
export function compareKeys(actual: ReadonlyMap<string, { readonly shape: readonly number[] }>, expected: KeyTable): KeyDiff {
  const missing: string[] = [];
  const unexpected: string[] = [];
  const mismatched: Mismatch[] = [];
  for (const [key, shape] of expected.tensors) {
    const t = actual.get(key);
    if (!t) missing.push(key);
    else if (!sameShape(t.shape, shape)) mismatched.push({ key, expected: [...shape], actual: [...t.shape] });
  }
  for (const [key, t] of actual) {
    if (expected.tensors.has(key)) continue;
    const opt = expected.optional?.get(key);
    if (!opt) unexpected.push(key);
    else if (!sameShape(t.shape, opt.shape)) mismatched.push({ key, expected: [...opt.shape], actual: [...t.shape] });
  }
  return { missing, unexpected, mismatched };
}

/** `a, b, c and 5 more` */
export function listKeys(keys: readonly string[], limit = 8): string {
  const shown = keys.slice(0, limit).join(', ');
  return keys.length > limit ? `${shown} and ${keys.length - limit} more` : shown;
}

/** `missing 1 key(s): a; unexpected 2 key(s): b, c; wrong shape: d is [2], expected [3]` ('' when clean). */
export function describeDiff(d: KeyDiff): string {
  const parts: string[] = [];
  if (d.missing.length) parts.push(`missing ${d.missing.length} key(s): ${listKeys(d.missing)}`);
  if (d.unexpected.length) parts.push(`unexpected ${d.unexpected.length} key(s): ${listKeys(d.unexpected)}`);
  if (d.mismatched.length) {
    parts.push(`wrong shape: ${listKeys(d.mismatched.map((m) => `${m.key} is [${m.actual.join(', ')}], expected [${m.expected.join(', ')}]`), 4)}`);
  }
  return parts.join('; ');
}
