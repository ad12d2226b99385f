/**
 * Peak activation memory of the autoencoder, as a pure function of the config and the input size, and the choice
 * between a whole decode and a tiled one.
 *
 * The model mirrors this implementation's tensor lifetimes (float32, NHWC, each stage's input freed after the stage,
 * intermediates freed as soon as consumed, see resnet-block.ts and nn/group-norm.ts). In units of one full feature
 * map (B * H * W * C * 4 bytes at the stage's resolution) the peaks are:
 *   GroupNorm c:            x + 4 c (moments' copy, deviation and square, then (x - mean) * rstd, * weight, + bias)
 *   ResnetBlock in -> out:  max(5 in, in + 5 out)          (x and norm1's peak; x, conv1 output and norm2's peak)
 *   Upsample c:             c / 4 + 2 c at the output size  (input, nearest-upsampled, conv)
 *   AttnBlock c over n = h*w: 6 c, plus 4 score blocks of min(n, rows) x n per batch item (scores, scaled, softmax
 *                           and the softmax kernel's own temporaries; attn-block.ts caps a block at 2^26 elements)
 *   norm_out + swish:       4 c
 * The largest terms for FLUX (ch 128, ch_mult [1,2,4,4]) are the decoder's first full-resolution ResnetBlock
 * (256 -> 128 channels: 5 x 256 maps at H x W) and, for large images, the mid attention's score blocks.
 * A backend adds kernel workspace on top (im2col / XNNPACK indirection buffers, allocator slack); WORKSPACE_FACTOR
 * covers it. Checked by packages/flux/test/vae.test.ts against the bytes tfjs actually holds (tf.profile peak) on each
 * backend: the estimate is 1.0x-2.5x of it (it over-counts, by design: choosing tiles too early only costs time).
 */
import type { AutoEncoderParams } from './config.ts';

/** Must match attn-block.ts MAX_SCORE_ELEMENTS. */
export const ATTN_MAX_SCORE_ELEMENTS = 1 << 26;
/** Multiplier on the modelled tensor bytes for backend workspace and allocator slack. */
export const WORKSPACE_FACTOR = 1.25;
/** tfjs-backend-wasm is a wasm32 module: its heap (all tensors) can never exceed 4 GiB. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 2 ** 30;
/**
 * Kept free in the wasm heap besides the tensors already held (fragmentation, kernel scratch). The heap of
 * tfjs-backend-wasm 4.22 stops growing short of 4 GiB, and allocations beyond it fail SILENTLY (tensors end up
 * aliasing memory), so staying under the budget is a correctness matter on wasm, not only a speed one. The heap also
 * holds memory tfjs does not count as tensors (README, VAE: the measured figures), hence 1 GiB.
 */
export const WASM_HEAP_MARGIN_BYTES = 1024 * 2 ** 20;
/** Native backends: default budget = this fraction of the machine's memory, minus what is already held. */
export const NATIVE_BUDGET_FRACTION = 0.5;

export interface SpatialSize {
  batch: number;
  height: number;
  width: number;
}

export interface MemoryEstimate {
  /** Modelled peak bytes of activations (weights excluded), WORKSPACE_FACTOR included. */
  peakBytes: number;
  /** The stage where the peak happens, e.g. `decoder.up.0.block.0`. */
  stage: string;
}

const F32 = 4;

function resnetMaps(ci: number, co: number): number {
  return Math.max(5 * ci, ci + 5 * co);
}

function attnBytes(batch: number, c: number, n: number): number {
  const rows = Math.max(1, Math.floor(ATTN_MAX_SCORE_ELEMENTS / (n * batch)));
  const block = batch * Math.min(n, rows) * n;
  return (6 * c * n * batch + 4 * block) * F32;
}

class Peak {
  bytes = 0;
  stage = '';
  add(stage: string, bytes: number): void {
    if (bytes > this.bytes) {
      this.bytes = bytes;
      this.stage = stage;
    }
  }
  result(): MemoryEstimate {
    return { peakBytes: Math.ceil(this.bytes * WORKSPACE_FACTOR), stage: this.stage };
  }
}

function checkSize(s: SpatialSize, what: string): void {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what}: ${k} must be a positive integer, got ${v}`);
  }
}

/** Peak activation bytes of `decode` (untiled) for a latent of [batch, z, height, width]. */
export function estimateDecodeMemory(p: AutoEncoderParams, latent: SpatialSize): MemoryEstimate {
  checkSize(latent, 'estimateDecodeMemory');
  const { batch: b } = latent;
  const levels = p.chMult.length;
  const peak = new Peak();
  let h = latent.height;
  let w = latent.width;
  const maps = (c: number) => b * h * w * c * F32;
  let c = p.ch * p.chMult[levels - 1];
  peak.add('decoder.conv_in', maps(p.zChannels + c));
  peak.add('decoder.mid.block_1', maps(resnetMaps(c, c)));
  peak.add('decoder.mid.attn_1', attnBytes(b, c, h * w));
  for (let i = levels - 1; i >= 0; i--) {
    const co = p.ch * p.chMult[i];
    for (let j = 0; j < p.numResBlocks + 1; j++) {
      peak.add(`decoder.up.${i}.block.${j}`, maps(resnetMaps(c, co)));
      c = co;
    }
    if (i !== 0) {
      h *= 2;
      w *= 2;
      peak.add(`decoder.up.${i}.upsample`, maps(c / 4 + 2 * c));
    }
  }
  peak.add('decoder.norm_out', maps(4 * c));
  return peak.result();
}

/** Peak activation bytes of `encode` (untiled) for an image of [batch, in, height, width]. */
export function estimateEncodeMemory(p: AutoEncoderParams, image: SpatialSize): MemoryEstimate {
  checkSize(image, 'estimateEncodeMemory');
  const { batch: b } = image;
  const peak = new Peak();
  let h = image.height;
  let w = image.width;
  const maps = (c: number) => b * h * w * c * F32;
  let c = p.ch;
  peak.add('encoder.conv_in', maps(p.inChannels + c));
  for (let i = 0; i < p.chMult.length; i++) {
    const co = p.ch * p.chMult[i];
    for (let j = 0; j < p.numResBlocks; j++) {
      peak.add(`encoder.down.${i}.block.${j}`, maps(resnetMaps(c, co)));
      c = co;
    }
    if (i !== p.chMult.length - 1) {
      peak.add(`encoder.down.${i}.downsample`, maps(2 * c + c / 4)); // input, padded copy, strided conv output
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
    }
  }
  peak.add('encoder.mid.block_1', maps(resnetMaps(c, c)));
  peak.add('encoder.mid.attn_1', attnBytes(b, c, h * w));
  peak.add('encoder.norm_out', maps(4 * c));
  return peak.result();
}

export interface MemoryBudgetInput {
  /** tfjs backend name (`wasm`, `tensorflow`, `cpu`, ...). */
  backend: string;
  /** Bytes of tensors already held (tf.memory().numBytes: the weights and whatever else is resident). */
  heldBytes: number;
  /** os.totalmem(). */
  totalMemBytes: number;
  /** Explicit budget for the activations (overrides the default; on wasm still capped by the heap). */
  budgetBytes?: number;
}

/**
 * Bytes the activations of one encode/decode may use. wasm: the 4 GiB heap minus twice the tensors held (XNNPACK keeps
 * a packed copy of every conv weight it has run) minus a margin (never more, whatever budgetBytes says).
 * Native / cpu: budgetBytes, else half the machine's memory minus held.
 */
export function activationBudget(i: MemoryBudgetInput): number {
  if (i.backend === 'wasm') {
    const heap = WASM_HEAP_LIMIT_BYTES - 2 * i.heldBytes - WASM_HEAP_MARGIN_BYTES;
    return Math.max(0, i.budgetBytes !== undefined ? Math.min(i.budgetBytes, heap) : heap);
  }
  if (i.budgetBytes !== undefined) return Math.max(0, i.budgetBytes);
  return Math.max(0, i.totalMemBytes * NATIVE_BUDGET_FRACTION - i.heldBytes);
}

/**
 * The largest square latent tile side (a multiple of 8 cells, at least 8, at most `maxSide`) whose decode fits
 * `budgetBytes`; 8 when even that does not fit (the smallest sensible tile).
 */
export function largestDecodeTile(p: AutoEncoderParams, batch: number, maxSide: number, budgetBytes: number): number {
  let best = 8;
  for (let t = 8; t <= Math.max(8, maxSide); t += 8) {
    if (estimateDecodeMemory(p, { batch, height: t, width: t }).peakBytes <= budgetBytes) best = t;
    else break;
  }
  return best;
}

/** The same for encode, in pixels (a multiple of 64, at least 64). */
export function largestEncodeTile(p: AutoEncoderParams, batch: number, maxSide: number, budgetBytes: number): number {
  let best = 64;
  for (let t = 64; t <= Math.max(64, maxSide); t += 64) {
    if (estimateEncodeMemory(p, { batch, height: t, width: t }).peakBytes <= budgetBytes) best = t;
    else break;
  }
  return best;
}
