/**
 * Will a generation of this size fit? A coarse estimate of the transformer stage's peak (the largest stage: the VAE
 * tiles itself to its budget, autoencoder/memory.ts) against what the backend can hold, so a size that cannot run is
 * refused before anything loads, with the numbers. It over-counts a little on purpose: refusing is for sizes that
 * clearly do not fit (the wasm heap's 4 GiB), not a tight bound.
 */
import { totalmem } from 'node:os';
import { imageTokens } from '@flux-ts/core';
import { WASM_HEAP_LIMIT_BYTES, WASM_HEAP_MARGIN_BYTES } from '../autoencoder/memory.ts';
import type { Residency } from '../runtime/backend.ts';
import type { Precision } from '../runtime/bf16.ts';
import type { FluxParams } from '../transformer/config.ts';
import { DoubleStreamBlock } from '../transformer/double-stream-block.ts';
import { autoHeadChunk, fluxParamSpec } from '../transformer/flux.ts';
import { SingleStreamBlock } from '../transformer/single-stream-block.ts';
import type { ParamSpec } from '../weights/spec.ts';

const F32 = 4;
const GIB = 2 ** 30;

export interface GenerationMemoryInput {
  width: number;
  height: number;
  batch: number;
  /** T5 tokens. */
  textTokens: number;
  residency: Residency;
  /** Weight precision (default fp32): resident weights take 4 (fp32), 2 (bf16) or 1 (fp8) bytes per parameter. */
  precision?: Precision;
  /** tfjs backend name. */
  backend: string;
  /** Default os.totalmem(). */
  totalMemBytes?: number;
}

export interface GenerationMemory {
  /** Estimated peak bytes of the transformer stage (weights on the device plus one block's activations). */
  transformerBytes: number;
  /** What the backend can hold (the wasm heap less a margin, or the machine's memory); null when unknown (GPU). */
  budgetBytes: number | null;
  fits: boolean;
  /** One line with the numbers. */
  summary: string;
}

function elements(spec: ParamSpec): number {
  return Object.values(spec).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
}

/** The transformer stage's peak for `params` at a size, and whether it fits the backend. */
export function estimateGenerationMemory(params: FluxParams, i: GenerationMemoryInput): GenerationMemory {
  const h = params.hiddenSize;
  const dims = { hidden_size: h, num_heads: params.numHeads, mlp_ratio: params.mlpRatio, qkv_bias: params.qkvBias };
  const l = imageTokens(i.width, i.height) + i.textTokens;
  const b = i.batch;
  const mlp = Math.round(h * params.mlpRatio);
  // Live activations of one block, in [B, L, *] maps: the streams, modulated copies, qkv, attention output and MLP.
  const double = b * l * F32 * (8 * h + 3 * h + 2 * mlp);
  const single = b * l * F32 * (4 * h + 2 * (3 * h + mlp));
  const chunk = autoHeadChunk(b, params.numHeads, l);
  const scores = 3 * b * chunk * l * l * F32;
  const bytesPerWeight = i.residency === 'fp8' ? 1 : i.precision === 'bf16' ? 2 : F32;
  const weights = i.residency === 'streamed'
    ? Math.max(elements(DoubleStreamBlock.spec(dims)), elements(SingleStreamBlock.spec(dims))) * bytesPerWeight
    : elements(fluxParamSpec(params)) * bytesPerWeight;
  const transformerBytes = weights + Math.max(double, single) + scores;
  const total = i.totalMemBytes ?? totalmem();
  const budgetBytes = i.backend === 'wasm'
    ? WASM_HEAP_LIMIT_BYTES - WASM_HEAP_MARGIN_BYTES / 4
    : i.backend === 'tensorflow-gpu' ? null : total;
  const fits = budgetBytes === null || transformerBytes <= budgetBytes;
  const where = i.backend === 'wasm' ? 'the wasm backend holds at most' : 'this machine has';
  const summary = `${i.width}x${i.height}${b > 1 ? ` x${b}` : ''} needs about ${(transformerBytes / GIB).toFixed(1)} GiB in the transformer stage (${i.residency} weights)` +
    (budgetBytes === null ? '' : `; ${where} ${(budgetBytes / GIB).toFixed(1)} GiB`);
  return { transformerBytes, budgetBytes, fits, summary };
}
