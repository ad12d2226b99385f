/**
 * BFL autoencoder.py `AutoEncoder` (= diffusers `AutoencoderKL` as configured for FLUX, no quant convs).
 *
 * Layout: the public API takes and returns NCHW tensors, as the reference; inside, everything runs NHWC (tfjs' native
 * conv layout), transposed once on the way in and once on the way out. Module fields are the BFL checkpoint key
 * segments: the parameter walk over them (`paramLeaves`) is the key table (`spec`) and the assignment of the loaded
 * weights alike (autoencoder/load.ts reads them, diffusers names through autoencoder/keys.ts).
 */
import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { validateAutoEncoderParams, type AutoEncoderParams } from './config.ts';
import { isParamLeaf, type ParamLeaf } from '../nn/conv2d.ts';
import type { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import type { ParamSpec } from '../weights/spec.ts';
import { WeightsError } from '../weights/validate.ts';
import { Decoder } from './decoder.ts';
import { Encoder } from './encoder.ts';
import { runTiled } from './tiling.ts';
import {
  activationBudget,
  estimateDecodeMemory,
  estimateEncodeMemory,
  largestDecodeTile,
  largestEncodeTile,
} from './memory.ts';

export type { AutoEncoderParams } from './config.ts';

/** Weights missing, unexpected or mis-shaped for the autoencoder config. */
export class VaeWeightsError extends WeightsError {
  constructor(message: string) {
    super('VAE_WEIGHTS', message);
    this.name = 'VaeWeightsError';
  }
}

/** A bad argument to encode/decode (wrong rank, channels, noise length, tile sizes). */
export class VaeInputError extends FluxError {
  constructor(message: string) {
    super('VAE_INPUT', message);
    this.name = 'VaeInputError';
  }
}

/** Anything with torch's `randn(shape)`: `TorchGenerator` from @flux-ts/core (bit-exact with torch.Generator('cpu')). */
export interface NoiseSource {
  randn(shape: readonly number[]): Float32Array;
}

/** diffusers `AutoencoderKL` tiling settings; every field defaults as diffusers derives it from the config. */
export interface VaeTiling {
  /** Latent tile side (diffusers tile_latent_min_size = sample_size / 2^(levels-1)). */
  tileLatentSize?: number;
  /** Pixel tile side (diffusers tile_sample_min_size = sample_size). */
  tileSampleSize?: number;
  /** Fraction of a tile shared with its neighbour (diffusers tile_overlap_factor, 0.25). */
  overlapFactor?: number;
}

/**
 * `'auto'` (default): whole when the estimated peak activation memory (memory.ts) fits the backend's budget, otherwise
 * tiled with the largest square tile that fits. `true` / VaeTiling: tiled exactly as diffusers' `enable_tiling()`
 * (only when the input is larger than one tile). `false`: never tiled.
 */
export type TilingChoice = 'auto' | boolean | VaeTiling;

export interface MemoryOptions {
  tiling?: TilingChoice;
  /** Activation budget in bytes for `'auto'` (default: wasm heap left, or half of os.totalmem() minus held tensors). */
  memoryBudgetBytes?: number;
  /**
   * Progress inside one encode/decode: after each tile when tiled (`unit` 'tile'), else after each level of the
   * network (the mid block and every up or down level: `unit` 'level'). `done` counts to `total`.
   */
  onProgress?: (done: number, total: number, unit: 'tile' | 'level') => void;
}

export type EncodeOptions = (
  | { mode?: 'mean' }
  | { mode: 'sample'; noise: Float32Array }
  /** Draws the latent sample's noise first thing from `generator` (diffusers `latent_dist.sample(generator)`). */
  | { mode: 'sample'; generator: NoiseSource }
) &
  MemoryOptions;

export type DecodeOptions = MemoryOptions;

/** How an encode/decode will run (`AutoEncoder.planDecode` / `planEncode`). */
export interface TilePlan {
  tiled: boolean;
  /** Input tile side (latent cells for decode, pixels for encode) and output tile side. */
  tileIn: number;
  tileOut: number;
  overlapFactor: number;
  /** Estimated peak activation bytes of the whole (untiled) run, and of one tile when tiled. */
  wholeBytes: number;
  tileBytes: number;
  /** The budget `'auto'` compared against (null when tiling was not 'auto'). */
  budgetBytes: number | null;
  reason: string;
}

/** Every parameter leaf of a module tree with its dotted path (array indices and field names = key segments). */
export function paramLeaves(root: object): Array<[string, ParamLeaf]> {
  const out: Array<[string, ParamLeaf]> = [];
  const walk = (v: unknown, path: string): void => {
    if (typeof v !== 'object' || v === null || v instanceof tf.Tensor) return;
    if (isParamLeaf(v)) {
      out.push([path, v]);
      return;
    }
    const entries: Array<[string, unknown]> = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.entries(v);
    for (const [k, x] of entries) walk(x, path ? `${path}.${k}` : k);
  };
  walk(root, '');
  return out;
}

export class AutoEncoder {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  /** 2^(levels-1): pixels per latent cell along each axis. */
  readonly downFactor: number;
  /** The loaded weights this model holds (fromCheckpointWeights). */
  private weights: CheckpointWeights | null = null;

  readonly params: AutoEncoderParams;
  constructor(params: AutoEncoderParams) {
    this.params = params;
    validateAutoEncoderParams(params);
    if (params.useQuantConv || params.usePostQuantConv) {
      throw new FluxError('INVALID_CONFIG', 'vae config: use_quant_conv / use_post_quant_conv are set, but the FLUX autoencoder has no quant convs; use the FLUX.1 vae/config.json');
    }
    this.encoder = new Encoder(params);
    this.decoder = new Decoder(params);
    this.downFactor = 2 ** (params.chMult.length - 1);
  }

  /** Every parameter (BFL key -> checkpoint shape) of an autoencoder of `params`: its key table. */
  static spec(params: AutoEncoderParams): ParamSpec {
    return Object.fromEntries(new AutoEncoder(params).parameterShapes());
  }

  /**
   * The model over loaded resident weights (autoencoder/load.ts opens and checks them against `spec(params)`);
   * it keeps `weights` and frees them on `dispose()`.
   */
  static fromCheckpointWeights(params: AutoEncoderParams, weights: CheckpointWeights): AutoEncoder {
    const ae = new AutoEncoder(params);
    const spec = AutoEncoder.spec(params);
    const opened = weights.layout.spec;
    if (Object.keys(spec).length !== Object.keys(opened).length || Object.entries(spec).some(([k, s]) => opened[k]?.join() !== s.join())) {
      throw new FluxError('INVALID_CONFIG', 'the VAE weights were opened for another config; open them with these params');
    }
    const w = weights.loaded('');
    for (const [path, leaf] of paramLeaves({ encoder: ae.encoder, decoder: ae.decoder })) {
      for (const name of Object.keys(leaf.paramShapes)) leaf.setParam(name, w[`${path}.${name}`]!);
    }
    ae.weights = weights;
    return ae;
  }

  /** BFL key -> checkpoint shape, for every parameter this config expects. */
  parameterShapes(): Map<string, readonly number[]> {
    const out = new Map<string, readonly number[]>();
    for (const [path, leaf] of paramLeaves({ encoder: this.encoder, decoder: this.decoder })) {
      for (const [name, shape] of Object.entries(leaf.paramShapes)) out.set(`${path}.${name}`, shape);
    }
    return out;
  }

  dispose(): void {
    this.weights?.dispose();
    this.weights = null;
  }

  private checkImage(x: tf.Tensor, what: string, channels: number): void {
    const s = x.shape as number[];
    if (s.length !== 4 || s[1] !== channels || s[2] < 1 || s[3] < 1) {
      throw new VaeInputError(`${what} must be [batch, ${channels}, height, width] (NCHW), got [${x.shape.join(', ')}]`);
    }
  }

  /**
   * The encoder's diagonal Gaussian, unscaled: x [B, in, H, W] in [-1, 1] -> mean, logvar [B, z, H/f, W/f]
   * (f = 2^(levels-1); logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution). With tiling, the
   * encoder output (mean | logvar before the clamp) is blended across tiles as diffusers' `_tiled_encode`.
   */
  encodeMoments(x: tf.Tensor4D, opts: MemoryOptions = {}): { mean: tf.Tensor4D; logvar: tf.Tensor4D } {
    this.checkImage(x, 'image', this.params.inChannels);
    const z = this.params.zChannels;
    const plan = this.planEncode(x.shape, opts);
    const xh = tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D; // [B,C,H,W] -> [B,H,W,C]
    let m: tf.Tensor4D; // [B, 2z, h, w]
    try {
      const onProgress = opts.onProgress;
      m = plan.tiled
        ? runTiled(xh, plan, (t) => this.encoder.forward(t), onProgress && ((d, n) => onProgress(d, n, 'tile')))
        : tf.tidy(() => tf.transpose(this.encoder.forward(xh, onProgress && ((d, n) => onProgress(d, n, 'level'))), [0, 3, 1, 2]) as tf.Tensor4D); // [B,h,w,2z] -> [B,2z,h,w]
    } finally {
      xh.dispose();
    }
    return tf.tidy(() => {
      const [b, , h, w] = m.shape;
      const mean = tf.slice(m, [0, 0, 0, 0], [b, z, h, w]) as tf.Tensor4D;
      const logvar = tf.clipByValue(tf.slice(m, [0, z, 0, 0], [b, z, h, w]), -30, 20) as tf.Tensor4D;
      m.dispose();
      return { mean, logvar };
    });
  }

  /**
   * BFL `AutoEncoder.encode` / diffusers `vae.encode(x).latent_dist` then FLUX scaling:
   * z = scale_factor * (z - shift_factor), with z the mean, or mean + exp(logvar / 2) * noise, the noise given
   * ([B, z, H/f, W/f] flattened row-major) or drawn as `generator.randn([B, z, H/f, W/f])` (what diffusers'
   * `latent_dist.sample(generator)` draws, before the pipeline draws its noise from the same generator).
   * x [B, in, H, W] -> [B, z, H/f, W/f].
   */
  encode(x: tf.Tensor4D, opts: EncodeOptions = { mode: 'mean' }): tf.Tensor4D {
    if (opts.mode === 'sample' && 'noise' in opts && !(opts.noise instanceof Float32Array)) {
      throw new VaeInputError('noise must be a Float32Array');
    }
    const { mean, logvar } = this.encodeMoments(x, opts);
    try {
      let noise: Float32Array | null = null;
      if (opts.mode === 'sample') {
        noise = 'generator' in opts ? opts.generator.randn(mean.shape) : opts.noise;
        if (noise.length !== mean.size) {
          throw new VaeInputError(`noise has ${noise.length} values; the latent [${mean.shape.join(', ')}] needs ${mean.size}`);
        }
      }
      const { scaleFactor, shiftFactor } = this.params;
      return tf.tidy(() => {
        const z = noise ? tf.add(mean, tf.mul(tf.exp(tf.mul(logvar, 0.5)), tf.tensor(noise, mean.shape, 'float32'))) : mean;
        return tf.mul(tf.sub(z, shiftFactor), scaleFactor) as tf.Tensor4D;
      });
    } finally {
      mean.dispose();
      logvar.dispose();
    }
  }

  /**
   * BFL `AutoEncoder.decode`: z [B, z, h, w] (scaled latent) -> z / scale_factor + shift_factor -> decoder ->
   * image [B, out_ch, h*f, w*f], roughly in [-1, 1]. Tiled as diffusers' `tiled_decode` when `tiling` says so
   * (or, with the default 'auto', when the whole decode would not fit the backend's memory).
   */
  decode(z: tf.Tensor4D, opts: DecodeOptions = {}): tf.Tensor4D {
    this.checkImage(z, 'latent', this.params.zChannels);
    const plan = this.planDecode(z.shape, opts);
    const { scaleFactor, shiftFactor } = this.params;
    const raw = tf.tidy(() => tf.transpose(tf.add(tf.div(z, scaleFactor), shiftFactor), [0, 2, 3, 1]) as tf.Tensor4D); // [B,z,h,w] -> [B,h,w,z]
    try {
      const onProgress = opts.onProgress;
      if (plan.tiled) return runTiled(raw, plan, (t) => this.decoder.forward(t), onProgress && ((d, n) => onProgress(d, n, 'tile')));
      return tf.tidy(() => tf.transpose(this.decoder.forward(raw, onProgress && ((d, n) => onProgress(d, n, 'level'))), [0, 3, 1, 2]) as tf.Tensor4D); // [B,H,W,C] -> [B,C,H,W]
    } finally {
      raw.dispose();
    }
  }

  /** How `decode` will run for a latent of `shape` [B, z, h, w] (pure apart from reading the backend's memory). */
  planDecode(shape: readonly number[], opts: MemoryOptions = {}): TilePlan {
    const [b, , h, w] = shape;
    const f = this.downFactor;
    const wholeBytes = estimateDecodeMemory(this.params, { batch: b, height: h, width: w }).peakBytes;
    const choice = opts.tiling ?? 'auto';
    if (choice === 'auto') {
      const budget = this.budget(opts);
      if (wholeBytes <= budget) return { tiled: false, tileIn: Math.max(h, w), tileOut: Math.max(h, w) * f, overlapFactor: 0, wholeBytes, tileBytes: wholeBytes, budgetBytes: budget, reason: `the whole decode (~${mib(wholeBytes)} MiB) fits the ${mib(budget)} MiB budget` };
      const t = largestDecodeTile(this.params, b, Math.max(h, w), budget);
      const tileBytes = estimateDecodeMemory(this.params, { batch: b, height: t, width: t }).peakBytes;
      return { tiled: true, tileIn: t, tileOut: t * f, overlapFactor: 0.25, wholeBytes, tileBytes, budgetBytes: budget, reason: `the whole decode (~${mib(wholeBytes)} MiB) exceeds the ${mib(budget)} MiB budget; ${t * f}px tiles (~${mib(tileBytes)} MiB each)` };
    }
    if (!choice) return { tiled: false, tileIn: Math.max(h, w), tileOut: Math.max(h, w) * f, overlapFactor: 0, wholeBytes, tileBytes: wholeBytes, budgetBytes: null, reason: 'tiling off' };
    const o = choice === true ? {} : choice;
    const tileOut = o.tileSampleSize ?? this.params.resolution;
    const tileIn = o.tileLatentSize ?? Math.floor(tileOut / f);
    const overlapFactor = o.overlapFactor ?? 0.25;
    checkTiles(tileIn, tileOut, overlapFactor);
    const tiled = h > tileIn || w > tileIn; // diffusers: tiles only when the latent is larger than one tile
    const tileBytes = tiled ? estimateDecodeMemory(this.params, { batch: b, height: Math.min(h, tileIn), width: Math.min(w, tileIn) }).peakBytes : wholeBytes;
    return { tiled, tileIn, tileOut, overlapFactor, wholeBytes, tileBytes, budgetBytes: null, reason: tiled ? 'tiling on' : 'tiling on, but the latent fits one tile' };
  }

  /** How `encode` will run for an image of `shape` [B, in, H, W]. */
  planEncode(shape: readonly number[], opts: MemoryOptions = {}): TilePlan {
    const [b, , h, w] = shape;
    const f = this.downFactor;
    const wholeBytes = estimateEncodeMemory(this.params, { batch: b, height: h, width: w }).peakBytes;
    const choice = opts.tiling ?? 'auto';
    if (choice === 'auto') {
      const budget = this.budget(opts);
      if (wholeBytes <= budget) return { tiled: false, tileIn: Math.max(h, w), tileOut: Math.floor(Math.max(h, w) / f), overlapFactor: 0, wholeBytes, tileBytes: wholeBytes, budgetBytes: budget, reason: `the whole encode (~${mib(wholeBytes)} MiB) fits the ${mib(budget)} MiB budget` };
      const t = largestEncodeTile(this.params, b, Math.max(h, w), budget);
      const tileBytes = estimateEncodeMemory(this.params, { batch: b, height: t, width: t }).peakBytes;
      return { tiled: true, tileIn: t, tileOut: t / f, overlapFactor: 0.25, wholeBytes, tileBytes, budgetBytes: budget, reason: `the whole encode (~${mib(wholeBytes)} MiB) exceeds the ${mib(budget)} MiB budget; ${t}px tiles (~${mib(tileBytes)} MiB each)` };
    }
    if (!choice) return { tiled: false, tileIn: Math.max(h, w), tileOut: Math.floor(Math.max(h, w) / f), overlapFactor: 0, wholeBytes, tileBytes: wholeBytes, budgetBytes: null, reason: 'tiling off' };
    const o = choice === true ? {} : choice;
    const tileIn = o.tileSampleSize ?? this.params.resolution;
    const tileOut = o.tileLatentSize ?? Math.floor(tileIn / f);
    const overlapFactor = o.overlapFactor ?? 0.25;
    checkTiles(tileOut, tileIn, overlapFactor);
    const tiled = h > tileIn || w > tileIn; // diffusers `_encode`: only when the image is larger than one tile
    const tileBytes = tiled ? estimateEncodeMemory(this.params, { batch: b, height: Math.min(h, tileIn), width: Math.min(w, tileIn) }).peakBytes : wholeBytes;
    return { tiled, tileIn, tileOut, overlapFactor, wholeBytes, tileBytes, budgetBytes: null, reason: tiled ? 'tiling on' : 'tiling on, but the image fits one tile' };
  }

  private budget(opts: MemoryOptions): number {
    const b = opts.memoryBudgetBytes;
    if (b !== undefined && !(Number.isFinite(b) && b > 0)) throw new VaeInputError(`memoryBudgetBytes must be a positive number, got ${b}`);
    return activationBudget({ backend: tf.getBackend(), heldBytes: tf.memory().numBytes, totalMemBytes: totalmem(), budgetBytes: b });
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 2 ** 20);
}

function checkTiles(latent: number, sample: number, overlapFactor: number): void {
  if (!Number.isInteger(latent) || latent < 1 || !Number.isInteger(sample) || sample < 1) {
    throw new VaeInputError(`tile sizes must be positive integers, got latent ${latent}, sample ${sample}`);
  }
  if (!(overlapFactor >= 0 && overlapFactor < 1) || Math.floor(latent * (1 - overlapFactor)) < 1) {
    throw new VaeInputError(`overlapFactor must be in [0, 1) and leave a stride of at least one latent cell, got ${overlapFactor} with ${latent}-cell tiles`);
  }
}

/**
 * Decoded image -> RGB bytes as diffusers' VaeImageProcessor.postprocess + numpy_to_pil:
 * (x / 2 + 0.5).clamp(0, 1) * 255, rounded half to even. image [B, 3, H, W] -> data [H * W * 3] (row-major RGB) of item `index`.
 */
export function imageToRgbBytes(image: tf.Tensor4D, index = 0): { width: number; height: number; data: Uint8Array } {
  const [b, c, height, width] = image.shape;
  if (image.rank !== 4 || c !== 3 || index < 0 || index >= b) {
    throw new VaeInputError(`imageToRgbBytes needs [batch, 3, height, width] and an index below the batch, got [${image.shape.join(', ')}] and ${index}`);
  }
  const values = tf.tidy(() => {
    const x = tf.transpose(tf.reshape(tf.slice(image, [index, 0, 0, 0], [1, 3, height, width]), [3, height, width]), [1, 2, 0]); // [3,H,W] -> [H,W,3]
    return tf.round(tf.mul(tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1), 255)).dataSync();
  });
  return { width, height, data: Uint8Array.from(values as Float32Array) };
}

/** RGB bytes [H * W * 3] -> image [1, 3, H, W] in [-1, 1], as diffusers' VaeImageProcessor (x / 255 * 2 - 1). */
export function rgbBytesToImage(data: Uint8Array, width: number, height: number): tf.Tensor4D {
  if (data.length !== width * height * 3) {
    throw new VaeInputError(`RGB data has ${data.length} bytes; ${width}x${height} needs ${width * height * 3}`);
  }
  return tf.tidy(() => {
    const x = tf.sub(tf.mul(tf.div(tf.tensor3d(Float32Array.from(data), [height, width, 3]), 255), 2), 1);
    return tf.expandDims(tf.transpose(x, [2, 0, 1]), 0) as tf.Tensor4D; // [H,W,3] -> [1,3,H,W]
  });
}
