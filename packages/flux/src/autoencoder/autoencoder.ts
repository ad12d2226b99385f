/**
 * BFL autoencoder.py `AutoEncoder` (= diffusers `AutoencoderKL` as configured for FLUX, no quant convs).
 *
 * Layout: the public API takes and returns NCHW tensors, as the reference; inside, everything runs NHWC (tfjs' native
 * conv layout), transposed once on the way in and once on the way out. Module fields are the BFL checkpoint key
 * segments, so `loadWeights` is one strict walk over them; diffusers names go through weights/vae-keys.ts first.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import {
  autoEncoderParamsFromDiffusers,
  validateAutoEncoderParams,
  type AutoEncoderParams,
} from '../configs.ts';
import { isParamLeaf, weightShape, type ParamLeaf, type WeightValue } from '../nn/conv2d.ts';
import { diffusersToBflVaeWeights, isDiffusersVaeNaming } from '../weights/vae-keys.ts';
import { Decoder } from './decoder.ts';
import { Encoder } from './encoder.ts';

export type { AutoEncoderParams } from '../configs.ts';
export type { WeightValue } from '../nn/conv2d.ts';

/** diffusers `vae/config.json` -> AutoEncoderParams (the parser lives in configs.ts). */
export const fromDiffusersConfig = autoEncoderParamsFromDiffusers;

/** Weights missing, unexpected or mis-shaped for the autoencoder config. */
export class VaeWeightsError extends FluxError {
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

export type EncodeOptions = { mode: 'mean' } | { mode: 'sample'; noise: Float32Array };

/** diffusers `AutoencoderKL.tiled_decode` settings; every field defaults as diffusers derives it from the config. */
export interface VaeTiling {
  /** Latent tile side (diffusers tile_latent_min_size = sample_size / 2^(levels-1)). */
  tileLatentSize?: number;
  /** Decoded tile side in pixels (diffusers tile_sample_min_size = sample_size). */
  tileSampleSize?: number;
  /** Fraction of a tile shared with its neighbour (diffusers tile_overlap_factor, 0.25). */
  overlapFactor?: number;
}

export interface DecodeOptions {
  /** Decode in overlapping tiles with blended seams when the latent is larger than one tile. Default false. */
  tiling?: boolean | VaeTiling;
}

function listKeys(keys: readonly string[], limit = 8): string {
  const shown = keys.slice(0, limit).join(', ');
  return keys.length > limit ? `${shown} and ${keys.length - limit} more` : shown;
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

  constructor(readonly params: AutoEncoderParams) {
    validateAutoEncoderParams(params);
    if (params.useQuantConv || params.usePostQuantConv) {
      throw new FluxError('INVALID_CONFIG', 'vae config: use_quant_conv / use_post_quant_conv are set, but the FLUX autoencoder has no quant convs; use the FLUX.1 vae/config.json');
    }
    this.encoder = new Encoder(params);
    this.decoder = new Decoder(params);
    this.downFactor = 2 ** (params.chMult.length - 1);
  }

  /** Builds the model and loads `weights` (BFL or diffusers names, detected) strictly. */
  static fromWeights(params: AutoEncoderParams, weights: ReadonlyMap<string, WeightValue>, where = 'VAE weights'): AutoEncoder {
    const ae = new AutoEncoder(params);
    try {
      ae.loadWeights(isDiffusersVaeNaming(weights.keys()) ? diffusersToBflVaeWeights(weights, params.chMult.length) : weights, where);
    } catch (e) {
      ae.dispose();
      throw e;
    }
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

  /**
   * The strict walk: `weights` (BFL names) must hold exactly the expected keys with exactly their shapes,
   * otherwise a VaeWeightsError names every missing, unexpected and mis-shaped key and nothing is loaded.
   */
  loadWeights(weights: ReadonlyMap<string, WeightValue>, where = 'VAE weights'): void {
    const expected = this.parameterShapes();
    const missing: string[] = [];
    const badShape: string[] = [];
    for (const [k, shape] of expected) {
      const v = weights.get(k);
      if (v === undefined) missing.push(k);
      else {
        const s = weightShape(v);
        if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) badShape.push(`${k} is [${s.join(', ')}], expected [${shape.join(', ')}]`);
      }
    }
    const unexpected = [...weights.keys()].filter((k) => !expected.has(k));
    if (missing.length + unexpected.length + badShape.length > 0) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing ${missing.length} key(s): ${listKeys(missing)}`);
      if (unexpected.length) parts.push(`unexpected ${unexpected.length} key(s): ${listKeys(unexpected)}`);
      if (badShape.length) parts.push(`wrong shape: ${listKeys(badShape, 4)}`);
      throw new VaeWeightsError(
        `${where} do not match the autoencoder config: ${parts.join('; ')}. ` +
          'Check that the file is the FLUX.1 autoencoder (ae.safetensors or vae/diffusion_pytorch_model.safetensors) and that the config matches it.',
      );
    }
    for (const [path, leaf] of paramLeaves({ encoder: this.encoder, decoder: this.decoder })) {
      for (const name of Object.keys(leaf.paramShapes)) leaf.setParam(name, weights.get(`${path}.${name}`)!);
    }
  }

  dispose(): void {
    for (const [, leaf] of paramLeaves({ encoder: this.encoder, decoder: this.decoder })) leaf.dispose();
  }

  private checkImage(x: tf.Tensor, what: string, channels: number): void {
    const s = x.shape as number[];
    if (s.length !== 4 || s[1] !== channels || s[2] < 1 || s[3] < 1) {
      throw new VaeInputError(`${what} must be [batch, ${channels}, height, width] (NCHW), got [${x.shape.join(', ')}]`);
    }
  }

  /**
   * The encoder's diagonal Gaussian, unscaled: x [B, in, H, W] in [-1, 1] -> mean, logvar [B, z, H/f, W/f]
   * (f = 2^(levels-1); logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution).
   */
  encodeMoments(x: tf.Tensor4D): { mean: tf.Tensor4D; logvar: tf.Tensor4D } {
    this.checkImage(x, 'image', this.params.inChannels);
    const z = this.params.zChannels;
    return tf.tidy(() => {
      const xh = tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D; // [B,C,H,W] -> [B,H,W,C]
      const m = this.encoder.forward(xh); // [B, h, w, 2z]
      const [b, h, w] = m.shape;
      const mean = tf.transpose(tf.slice(m, [0, 0, 0, 0], [b, h, w, z]), [0, 3, 1, 2]) as tf.Tensor4D; // -> [B, z, h, w]
      const logvar = tf.transpose(tf.clipByValue(tf.slice(m, [0, 0, 0, z], [b, h, w, z]), -30, 20), [0, 3, 1, 2]) as tf.Tensor4D;
      return { mean, logvar };
    });
  }

  /**
   * BFL `AutoEncoder.encode` / diffusers `vae.encode(x).latent_dist` then FLUX scaling:
   * z = scale_factor * (z - shift_factor), with z the mean, or mean + exp(logvar / 2) * noise (noise from the caller,
   * [B, z, H/f, W/f] flattened row-major). x [B, in, H, W] -> [B, z, H/f, W/f].
   */
  encode(x: tf.Tensor4D, opts: EncodeOptions = { mode: 'mean' }): tf.Tensor4D {
    const { mean, logvar } = this.encodeMoments(x);
    try {
      if (opts.mode === 'sample' && opts.noise.length !== mean.size) {
        throw new VaeInputError(`noise has ${opts.noise.length} values; the latent [${mean.shape.join(', ')}] needs ${mean.size}`);
      }
      const { scaleFactor, shiftFactor } = this.params;
      return tf.tidy(() => {
        const z =
          opts.mode === 'sample'
            ? tf.add(mean, tf.mul(tf.exp(tf.mul(logvar, 0.5)), tf.tensor(opts.noise, mean.shape, 'float32')))
            : mean;
        return tf.mul(tf.sub(z, shiftFactor), scaleFactor) as tf.Tensor4D;
      });
    } finally {
      mean.dispose();
      logvar.dispose();
    }
  }

  /**
   * BFL `AutoEncoder.decode`: z [B, z, h, w] (scaled latent) -> z / scale_factor + shift_factor -> decoder ->
   * image [B, out_ch, h*f, w*f], roughly in [-1, 1]. With `tiling`, as diffusers' `decode` with `enable_tiling()`.
   */
  decode(z: tf.Tensor4D, opts: DecodeOptions = {}): tf.Tensor4D {
    this.checkImage(z, 'latent', this.params.zChannels);
    const { scaleFactor, shiftFactor } = this.params;
    const raw = tf.tidy(() => tf.transpose(tf.add(tf.div(z, scaleFactor), shiftFactor), [0, 2, 3, 1]) as tf.Tensor4D); // [B,z,h,w] -> [B,h,w,z]
    try {
      const tiling = this.resolveTiling(opts.tiling);
      if (tiling && (raw.shape[1] > tiling.tileLatentSize || raw.shape[2] > tiling.tileLatentSize)) return this.tiledDecode(raw, tiling);
      return tf.tidy(() => tf.transpose(this.decoder.forward(raw), [0, 3, 1, 2]) as tf.Tensor4D); // [B,H,W,C] -> [B,C,H,W]
    } finally {
      raw.dispose();
    }
  }

  private resolveTiling(t: DecodeOptions['tiling']): Required<VaeTiling> | null {
    if (!t) return null;
    const o = t === true ? {} : t;
    const tileSampleSize = o.tileSampleSize ?? this.params.resolution;
    const tileLatentSize = o.tileLatentSize ?? Math.floor(tileSampleSize / this.downFactor);
    const overlapFactor = o.overlapFactor ?? 0.25;
    if (!Number.isInteger(tileLatentSize) || tileLatentSize < 1 || !Number.isInteger(tileSampleSize) || tileSampleSize < 1) {
      throw new VaeInputError(`tile sizes must be positive integers, got latent ${tileLatentSize}, sample ${tileSampleSize}`);
    }
    if (!(overlapFactor >= 0 && overlapFactor < 1) || Math.floor(tileLatentSize * (1 - overlapFactor)) < 1) {
      throw new VaeInputError(`overlapFactor must be in [0, 1) and leave a stride of at least one latent cell, got ${overlapFactor} with ${tileLatentSize}-cell tiles`);
    }
    return { tileLatentSize, tileSampleSize, overlapFactor };
  }

  /**
   * diffusers `AutoencoderKL.tiled_decode` (autoencoder_kl.py): tiles of tileLatentSize latent cells every
   * floor(T * (1 - overlap)) cells, each decoded alone; each tile blended in place with the (already blended) tile
   * above (blend_v) then the one to its left (blend_h) over floor(S * overlap) pixels, then cropped to S - blend
   * pixels. Blending runs on host arrays in the reference's order. raw [B, h, w, z] (unscaled) -> [B, C, H, W].
   */
  private tiledDecode(raw: tf.Tensor4D, t: Required<VaeTiling>): tf.Tensor4D {
    const [b, h, w, zc] = raw.shape;
    const T = t.tileLatentSize;
    const overlap = Math.floor(T * (1 - t.overlapFactor));
    const blendExtent = Math.floor(t.tileSampleSize * t.overlapFactor);
    const rowLimit = t.tileSampleSize - blendExtent;
    const c = this.params.outCh;
    const rows: Tile[][] = [];
    for (let i = 0; i < h; i += overlap) {
      const row: Tile[] = [];
      for (let j = 0; j < w; j += overlap) {
        const th = Math.min(T, h - i);
        const tw = Math.min(T, w - j);
        const data = tf.tidy(() => {
          const tile = tf.slice(raw, [0, i, j, 0], [b, th, tw, zc]);
          return Float32Array.from(tf.transpose(this.decoder.forward(tile), [0, 3, 1, 2]).dataSync()); // [B,H,W,C] -> [B,C,H,W]
        });
        row.push({ data, n: b * c, h: th * this.downFactor, w: tw * this.downFactor });
      }
      rows.push(row);
    }
    const cropped: Tile[][] = rows.map((row, i) =>
      row.map((tile, j) => {
        if (i > 0) blendV(rows[i - 1][j], tile, blendExtent);
        if (j > 0) blendH(row[j - 1], tile, blendExtent);
        return tile;
      }),
    );
    const outH = cropped.reduce((s, row) => s + Math.min(rowLimit, row[0].h), 0);
    const outW = cropped[0].reduce((s, tile) => s + Math.min(rowLimit, tile.w), 0);
    const out = new Float32Array(b * c * outH * outW);
    let y0 = 0;
    for (const row of cropped) {
      let x0 = 0;
      const ch = Math.min(rowLimit, row[0].h);
      for (const tile of row) {
        const cw = Math.min(rowLimit, tile.w);
        for (let k = 0; k < tile.n; k++) {
          for (let y = 0; y < ch; y++) {
            const src = (k * tile.h + y) * tile.w;
            out.set(tile.data.subarray(src, src + cw), (k * outH + y0 + y) * outW + x0);
          }
        }
        x0 += cw;
      }
      y0 += ch;
    }
    return tf.tensor4d(out, [b, c, outH, outW]);
  }
}

/** One decoded tile on the host: [n = B*C, h, w] row-major. */
interface Tile {
  data: Float32Array;
  n: number;
  h: number;
  w: number;
}

/** diffusers `blend_v`: b's first rows fade in from a's last rows (in place on b). */
function blendV(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.h, b.h, extent);
  for (let y = 0; y < e; y++) {
    const wa = Math.fround(1 - y / e);
    const wb = Math.fround(y / e);
    for (let k = 0; k < b.n; k++) {
      const ra = (k * a.h + a.h - e + y) * a.w;
      const rb = (k * b.h + y) * b.w;
      for (let x = 0; x < b.w; x++) b.data[rb + x] = Math.fround(a.data[ra + x] * wa) + Math.fround(b.data[rb + x] * wb);
    }
  }
}

/** diffusers `blend_h`: b's first columns fade in from a's last columns (in place on b). */
function blendH(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.w, b.w, extent);
  for (let x = 0; x < e; x++) {
    const wa = Math.fround(1 - x / e);
    const wb = Math.fround(x / e);
    for (let k = 0; k < b.n; k++) {
      for (let y = 0; y < b.h; y++) {
        const ia = (k * a.h + y) * a.w + a.w - e + x;
        const ib = (k * b.h + y) * b.w + x;
        b.data[ib] = Math.fround(a.data[ia] * wa) + Math.fround(b.data[ib] * wb);
      }
    }
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
