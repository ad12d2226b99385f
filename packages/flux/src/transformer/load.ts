/**
 * Opening the transformer from a checkpoint with a weight residency:
 *   resident  every weight read and built once (float32, Linear weights transposed once; or bf16 as stored), for
 *             machines that hold the whole model (full FLUX.1: ~48 GB in float32, 23.8 GB in bf16)
 *   fp8       resident, with the Linear weights kept as fp8 e4m3fn and cast to bf16 per use (11.9 GB; bf16 only)
 *   streamed  each module's weights read from disk, built, used and disposed during every forward; the peak is about
 *             one double block plus activations, which fits the 4 GB wasm heap
 * 'auto' picks from the backend, the precision and the machine's memory (defaultResidency). Resident and streamed run
 * the same modules in the same order on the same values (one executor, weights/checkpoint-weights.ts): identical
 * outputs. fp8 rounds the weights to e4m3.
 */
import { totalmem } from 'node:os';
import { FluxError } from '@flux-ts/core';
import { currentBackend, type BackendInfo, type Residency } from '../runtime/backend.ts';
import type { Precision } from '../runtime/bf16.ts';
import type { TensorReader } from '../weights/checkpoint.ts';
import { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { detectFormat } from '../weights/detect.ts';
import type { FluxParams } from './config.ts';
import { Flux, type FluxOptions } from './flux.ts';
import { transformerLayout, TransformerWeightsError, type TransformerFormat } from './keys.ts';

export const RESIDENCIES: readonly (Residency | 'auto')[] = Object.freeze(['auto', 'resident', 'streamed', 'fp8']);

export interface TransformerWeightsOptions {
  /** Default 'auto' (defaultResidency). */
  residency?: Residency | 'auto';
  /** Streamed: read the next module while one computes (default true). */
  prefetch?: boolean;
  /** The checkpoint's layout and key prefix as model discovery read them from the header; detected when absent. */
  format?: TransformerFormat;
  prefix?: string;
  /** Linear weights in bf16 (native backend; from the stored bytes) or float32 (default). */
  precision?: Precision;
}

export interface LoadTransformerOptions extends FluxOptions, TransformerWeightsOptions {
  /** Resident weights: called after each tensor is built (`done` of `total`). */
  onLoadProgress?: (done: number, total: number) => void;
}

/** Share of the machine's memory the kept transformer weights may take (the rest: activations, the other stages). */
export const RESIDENT_MEMORY_SHARE = 0.55;

/**
 * The residency 'auto' picks. A GPU keeps everything ('resident'). On the native CPU backend in bf16, from the
 * machine's memory: 'resident' when the bf16 weights fit in RESIDENT_MEMORY_SHARE of it (the full transformer,
 * 23.8 GB: from 44 GB, so a 64 GB machine), 'fp8' when half of that fits (a 24 or 32 GB machine), else 'streamed'
 * (16 GB). wasm, cpu and float32 stream (float32 FLUX.1 is 48 GB).
 */
export function defaultResidency(
  backend: Pick<BackendInfo, 'name' | 'device'> | undefined = currentBackend(),
  opts: { precision?: Precision; weightBytesBf16?: number; totalMemory?: number } = {},
): Residency {
  if (backend?.name !== 'tensorflow') return 'streamed';
  if (/GPU/i.test(backend.device)) return 'resident';
  if (opts.precision !== 'bf16' || opts.weightBytesBf16 === undefined) return 'streamed';
  const budget = RESIDENT_MEMORY_SHARE * (opts.totalMemory ?? totalmem());
  if (opts.weightBytesBf16 <= budget) return 'resident';
  if (opts.weightBytesBf16 / 2 <= budget) return 'fp8';
  return 'streamed';
}

/** The transformer's CheckpointWeights over `reader` (BFL or diffusers names, any float dtype incl. fp8), checked. */
export function openTransformerWeights(reader: TensorReader, params: FluxParams, opts: TransformerWeightsOptions = {}): CheckpointWeights {
  const { residency = 'auto' } = opts;
  if (!RESIDENCIES.includes(residency)) {
    throw new FluxError('FLUX_OPTION', `residency must be one of ${RESIDENCIES.join(', ')}, got ${String(residency)}`);
  }
  let { format, prefix } = opts;
  if (format === undefined) {
    const d = detectFormat(reader.tensors.keys());
    if (d.format !== 'bfl-transformer' && d.format !== 'diffusers-transformer') {
      throw new TransformerWeightsError(
        `${reader.path} holds no FLUX transformer weights (its keys look like ${d.format}); pass the transformer checkpoint (flux1-*.safetensors or transformer/)`,
      );
    }
    format = d.format;
    prefix ??= d.prefix;
  }
  const layout = transformerLayout(params, format);
  const weightBytesBf16 = 2 * Object.values(layout.spec).reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
  return new CheckpointWeights(reader, layout, {
    residency: residency === 'auto' ? defaultResidency(currentBackend(), { precision: opts.precision, weightBytesBf16 }) : residency,
    prefetch: opts.prefetch,
    prefix,
    precision: opts.precision,
  });
}

/**
 * The transformer over an open checkpoint (weights/checkpoint.ts `openCheckpoint`, or `memoryCheckpoint`). Every key
 * and shape is checked against `params` before any data is read; resident weights are all read here. Streamed
 * models read from `reader` during every forward: keep it open while the model is used (close it after `dispose()`).
 */
export async function loadTransformer(reader: TensorReader, params: FluxParams, opts: LoadTransformerOptions = {}): Promise<Flux> {
  const { residency, prefetch, format, prefix, precision, onLoadProgress, ...fluxOptions } = opts;
  const weights = openTransformerWeights(reader, params, { residency, prefetch, format, prefix, precision });
  if (weights.keeps) await weights.loadAll(onLoadProgress);
  return new Flux(params, weights, fluxOptions);
}
