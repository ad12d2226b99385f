/**
 * Fixture files made by the Python reference scripts (test/reference/gen_<area>.py) and committed
 * under test/fixtures/<area>/.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSafetensors, type Dtype } from '../../packages/flux/src/weights/safetensors.ts';

/** The repository root (this file is <root>/test/harness/fixtures.ts). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** <repo>/test/fixtures/...parts */
export function fixturePath(...parts: string[]): string {
  return path.join(REPO_ROOT, 'test', 'fixtures', ...parts);
}

/** Numeric arrays only: I64/U64 tensors (e.g. token ids from torch) come back as Float64Array. */
export type FixtureArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

export interface FixtureTensor {
  dtype: Dtype;
  shape: number[];
  data: FixtureArray;
}

function missing(area: string, file: string): Error {
  return new Error(
    `fixture test/fixtures/${area}/${file} not found; regenerate it with ` +
      `test/reference/.venv/bin/python test/reference/gen_${area}.py (setup: test/reference/README.md)`,
  );
}

/**
 * Every tensor of test/fixtures/<area>/<file> (a safetensors file). Float dtypes come back as Float32Array,
 * 8/16/32-bit ints natively, I64/U64 as Float64Array (exact; a value beyond 2^53 is an error).
 */
export async function loadFixture(area: string, file: string): Promise<Record<string, FixtureTensor>> {
  const p = fixturePath(area, file);
  if (!existsSync(p)) throw missing(area, file);
  const raw = await loadSafetensors(p);
  const out: Record<string, FixtureTensor> = {};
  for (const [name, t] of Object.entries(raw)) out[name] = toFixtureTensor(t, `${area}/${file}: ${name}`);
  return out;
}

/** A small JSON fixture, test/fixtures/<area>/<file>. */
export async function loadJsonFixture<T = unknown>(area: string, file: string): Promise<T> {
  const p = fixturePath(area, file);
  if (!existsSync(p)) throw missing(area, file);
  return JSON.parse(await readFile(p, 'utf8')) as T;
}

/** Makes 64-bit int data numeric (Float64Array, exact up to 2^53); other arrays pass through. */
export function toFixtureTensor(
  t: { dtype: Dtype; shape: number[]; data: FixtureArray | BigInt64Array | BigUint64Array },
  what = 'tensor',
): FixtureTensor {
  if (!(t.data instanceof BigInt64Array || t.data instanceof BigUint64Array)) return { dtype: t.dtype, shape: t.shape, data: t.data };
  const src = t.data;
  const data = new Float64Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = Number(src[i]);
    if (!Number.isSafeInteger(v)) throw new Error(`fixture ${what}[${i}] = ${src[i]} does not fit a double exactly`);
    data[i] = v;
  }
  return { dtype: t.dtype, shape: t.shape, data };
}
