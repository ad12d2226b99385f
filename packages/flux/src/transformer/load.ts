/**
 * Opening the transformer from a checkpoint with a weight residency:
 *   resident  every weight read, converted to float32 and uploaded once (Linear weights transposed once); for
 *             devices that hold the whole model (full FLUX.1 in float32 is ~48 GB)
 *   streamed  each module's weights read from disk, converted, uploaded, used and disposed during every forward;
 *             the peak is about one double block plus activations, which fits the 4 GB wasm heap. The default
 *             everywhere but the native backend on a GPU.
 * Both run the same modules in the same order on the same float32 values (one executor,
 * weights/checkpoint-weights.ts), so their outputs are identical.
 */
import { FluxError } from '@flux-ts/core';
import { currentBackend, type BackendInfo, type Residency } from '../runtime/backend.ts';
import type { TensorReader } from '../weights/checkpoint.ts';
import { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { detectFormat } from '../weights/detect.ts';
import type { FluxParams } from './config.ts';
import { Flux, type FluxOptions } from './flux.ts';
import { transformerLayout, TransformerWeightsError, type TransformerFormat } from './keys.ts';

export const RESIDENCIES: readonly (Residency | 'auto')[] = Object.freeze(['auto', 'resident', 'streamed']);

export interface TransformerWeightsOptions {
  /** Default 'auto' (defaultResidency). */
  residency?: Residency | 'auto';
  /** Streamed: read the next module while one computes (default true). */
  prefetch?: boolean;
  /** The checkpoint's layout and key prefix as model discovery read them from the header; detected when absent. */
  format?: TransformerFormat;
  prefix?: string;
}

export interface LoadTransformerOptions extends FluxOptions, TransformerWeightsOptions {
  /** Resident weights: called after each tensor is built (`done` of `total`). */
  onLoadProgress?: (done: number, total: number) => void;
}

/** 'resident' on the native backend with a GPU, else 'streamed' (wasm, cpu, native CPU with its host memory). */
export function defaultResidency(backend: Pick<BackendInfo, 'name' | 'device'> | undefined = currentBackend()): Residency {
  return backend?.name === 'tensorflow' && /GPU/i.test(backend.device) ? 'resident' : 'streamed';
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
  return new CheckpointWeights(reader, transformerLayout(params, format), {
    residency: residency === 'auto' ? defaultResidency() : residency,
    prefetch: opts.prefetch,
    prefix,
  });
}

/**
 * The transformer over an open checkpoint (weights/checkpoint.ts `openCheckpoint`, or `memoryCheckpoint`). Every key
 * and shape is checked against `params` before any data is read; resident weights are all read here. Streamed
 * models read from `reader` during every forward: keep it open while the model is used (close it after `dispose()`).
 */
export async function loadTransformer(reader: TensorReader, params: FluxParams, opts: LoadTransformerOptions = {}): Promise<Flux> {
  const { residency, prefetch, format, prefix, onLoadProgress, ...fluxOptions } = opts;
  const weights = openTransformerWeights(reader, params, { residency, prefetch, format, prefix });
  if (weights.residency === 'resident') await weights.loadAll(onLoadProgress);
  return new Flux(params, weights, fluxOptions);
}
