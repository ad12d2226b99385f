/**
 * Opening the transformer from a checkpoint with a weight residency:
 *   resident  every weight read, converted to float32 and uploaded once (Linear weights transposed once); for
 *             devices that hold the whole model (full FLUX.1 in float32 is ~48 GB)
 *   streamed  each module's weights read from disk, converted, uploaded, used and disposed during every forward;
 *             the peak is about one double block (1.36 GB float32 at full width) plus activations, which fits
 *             the 4 GB wasm heap. The default everywhere but the native backend on a GPU.
 * Both run the same modules in the same order on the same float32 values, so their outputs are identical.
 */
import { FluxError } from '@flux-ts/core';
import { currentBackend, type BackendInfo, type Residency } from '../runtime/backend.ts';
import { Flux, type FluxOptions, type FluxParams } from './flux.ts';
import { readAllWeights, StreamedWeights, type WeightReader } from '../weights/checkpoint-weights.ts';

export const RESIDENCIES: readonly (Residency | 'auto')[] = Object.freeze(['auto', 'resident', 'streamed']);

export interface LoadTransformerOptions extends FluxOptions {
  /** Default 'auto' (defaultResidency). */
  residency?: Residency | 'auto';
}

/** 'resident' on the native backend with a GPU, else 'streamed' (wasm, cpu, native CPU with its host memory). */
export function defaultResidency(backend: Pick<BackendInfo, 'name' | 'device'> | undefined = currentBackend()): Residency {
  return backend?.name === 'tensorflow' && /GPU/i.test(backend.device) ? 'resident' : 'streamed';
}

/**
 * The transformer over an open checkpoint (weights/checkpoint.ts `openCheckpoint`, BFL or diffusers names, any
 * float dtype incl. fp8). The key set is checked against `params` before any data is read. Streamed models read
 * from `reader` during every forward: keep it open while the model is used (close it after `dispose()`).
 */
export async function loadTransformer(reader: WeightReader, params: FluxParams, opts: LoadTransformerOptions = {}): Promise<Flux> {
  const { residency = 'auto', ...fluxOptions } = opts;
  if (!RESIDENCIES.includes(residency)) {
    throw new FluxError('FLUX_OPTION', `residency must be one of ${RESIDENCIES.join(', ')}, got ${String(residency)}`);
  }
  const mode = residency === 'auto' ? defaultResidency() : residency;
  const streamed = new StreamedWeights(reader, params); // validates every key (and BFL shapes) before reading data
  if (mode === 'streamed') return new Flux(params, streamed, fluxOptions);
  return Flux.fromTensors(params, await readAllWeights(streamed.reader), fluxOptions);
}
