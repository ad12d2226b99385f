/**
 * Parameter specs: what a module holds, as `{ key: shape }` with keys relative to the module and named as the
 * model's checkpoint (fields ARE the key segments), shapes in checkpoint layout (Linear [out, in], conv
 * [out, in, kh, kw]). Every module builds its static `spec()` from these helpers, so the whole model's spec is the
 * one key table; modules are then built from a `Weights` record holding exactly those keys (prepared for compute:
 * see weights/executor.ts).
 */
import type * as tf from '@tensorflow/tfjs-core';

export type ParamSpec = Record<string, readonly number[]>;
export type Weights = Record<string, tf.Tensor>;

/** Prefixes every key of `spec`. */
export function prefixed(prefix: string, spec: ParamSpec): ParamSpec {
  const out: Record<string, readonly number[]> = {};
  for (const [k, s] of Object.entries(spec)) out[prefix + k] = s;
  return out;
}

/** nn.Linear(inF, outF, bias): `{weight: [out, in], bias: [out]}` under `prefix` ('' = no prefix). */
export function linearSpec(prefix: string, inF: number, outF: number, bias = true): ParamSpec {
  const at = prefix ? `${prefix}.` : '';
  const s: Record<string, readonly number[]> = { [`${at}weight`]: [outF, inF] };
  if (bias) s[`${at}bias`] = [outF];
  return s;
}

/** An affine LayerNorm / GroupNorm: `{weight: [n], bias: [n]}`. */
export function normSpec(prefix: string, n: number): ParamSpec {
  return { [`${prefix}.weight`]: [n], [`${prefix}.bias`]: [n] };
}

/** The tensors under `prefix`, keyed by the rest of the key (no copies). */
export function scope(w: Weights, prefix: string): Weights {
  const out: Weights = {};
  for (const [k, t] of Object.entries(w)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = t;
  return out;
}

/** `w[key]`, which the loader guarantees; a missing key is a bug in the caller, named here. */
export function take<T extends tf.Tensor = tf.Tensor>(w: Weights, key: string): T {
  const t = w[key];
  if (t === undefined) throw new Error(`weights have no ${JSON.stringify(key)} (given: ${Object.keys(w).slice(0, 8).join(', ')})`);
  return t as T;
}
