/** Shared bits of the benchmarks: backend choice, timing, the results table and JSON. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendInfo } from '@flux-ts/flux';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** Parses `--backend` plus the benchmark's own options, then initialises the backend. */
export async function setup<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  const { values } = parseArgs({ args: argv, options: { backend: { type: 'string' }, ...options }, strict: true });
  const backend: BackendInfo = await initBackend({ backend: (values as { backend?: string }).backend });
  console.log(`backend: ${backend.name} (${backend.device}), tfjs ${backend.tfjsVersion}` +
    (backend.tensorflowVersion ? `, TensorFlow ${backend.tensorflowVersion}` : ''));
  return { values: values as Record<string, string | boolean | undefined>, backend };
}

/** Peak resident set size of this process so far, in MiB (Linux: VmHWM). */
export function peakRssMiB(): number {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    if (m) return Number(m[1]) / 1024;
  } catch { /* not Linux */ }
  return process.memoryUsage().rss / 2 ** 20;
}

/** Awaits the backend's pending work for a tensor (forces execution on async backends). */
export async function settle(t: tf.Tensor | tf.Tensor[]): Promise<void> {
  const list = Array.isArray(t) ? t : [t];
  for (const x of list) await x.data();
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const fmt = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padStart(widths[i])).join('  ');
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => fmt(r[c] ?? ''))));
}

/**
 * Writes bench/results/<name>.json. A results file keeps one run per backend: `runs[backend]` holds that run's meta,
 * and `entries` keeps the other backends' entries, so measuring wasm after native adds to the file instead of
 * replacing it.
 */
export function writeResults(name: string, entries: Record<string, unknown>[], meta: Record<string, unknown> = {}): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  const fallback = typeof meta.backend === 'string' ? meta.backend : 'unknown';
  const tagged = entries.map((e) => ({ backend: fallback, ...e }));
  const backends = new Set(tagged.map((e) => String(e.backend)));
  let previous: { runs?: Record<string, unknown>; entries?: Record<string, unknown>[] } = {};
  try {
    previous = JSON.parse(readFileSync(path, 'utf8'));
  } catch { /* first run, or unreadable: start over */ }
  const kept = (previous.entries ?? []).filter((e) => typeof e.backend === 'string' && !backends.has(e.backend));
  const run = { date: new Date().toISOString(), node: process.version, ...meta };
  const runs: Record<string, unknown> = { ...(previous.runs ?? {}) };
  for (const b of backends) runs[b] = run;
  const doc = { benchmark: name, runs, entries: [...kept, ...tagged] };
  writeFileSync(path, JSON.stringify(doc, null, 2) + '\n');
  console.log(`wrote ${path}`);
  return path;
}
