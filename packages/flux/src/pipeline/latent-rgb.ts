/**
 * The `proj` preview: a fixed linear map from the VAE's latent channels (16 for FLUX.1) to RGB, applied to each
 * latent cell of the x0 estimate (stable-diffusion.cpp's `--preview proj`, ComfyUI's latent2rgb). Milliseconds, at
 * the latent's resolution (W/8 x H/8).
 *
 * The coefficients are not copied from anywhere: `fitLatentRgb` derives them from the model's own VAE by least
 * squares. A fixed set of synthetic colour images (smooth gradients and blobs, drawn from a seeded generator) is
 * encoded to latents with the VAE's encoder (the latents real x0 estimates resemble: smooth, natural-looking ones),
 * decoded again, and the decoded image averaged over each 8x8 cell is the target of `rgb = W^T z + b` per cell.
 * The fit reports its quality (R^2 per colour channel, RMSE in [-1, 1] units), so a VAE the map cannot describe is
 * visible as such. The pipeline fits once per VAE and keeps the result.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import type { AutoEncoder } from '../autoencoder/autoencoder.ts';
import type { RgbImage } from '../image/types.ts';
import { mulberry32 } from '../shared/random.ts';

export interface LatentRgbProjection {
  /** [channels][3]: the RGB contribution of each latent channel (output in [-1, 1] units). */
  weights: readonly (readonly number[])[];
  /** [3] */
  bias: readonly number[];
}

export interface LatentRgbFit {
  projection: LatentRgbProjection;
  /** Coefficient of determination per colour channel (1 = the map explains the decoded colours exactly). */
  r2: [number, number, number];
  /** Root mean square error of the fitted colours, in the decoder's [-1, 1] units. */
  rmse: number;
  /** Latent cells the fit used. */
  samples: number;
}

export interface FitOptions {
  /** Synthetic images encoded (default 8). */
  images?: number;
  /** Their side in pixels, a multiple of the VAE's down factor (default 64: 8 x 8 latent cells each). */
  size?: number;
  /** Seed of the synthetic images (default 0). */
  seed?: number;
  /** After each image encoded and decoded (`done` of `total`). */
  onProgress?: (done: number, total: number) => void;
}

/** One synthetic image [3, S, S] in [-1, 1]: a two-colour gradient under a few soft colour blobs. */
export function syntheticImage(size: number, rand: () => number): Float32Array {
  const colour = () => [rand() * 2 - 1, rand() * 2 - 1, rand() * 2 - 1];
  const [a, b] = [colour(), colour()];
  const angle = rand() * 2 * Math.PI;
  const blobs = Array.from({ length: 3 + Math.floor(rand() * 3) }, () => ({
    x: rand() * size, y: rand() * size, r: size * (0.08 + rand() * 0.3), c: colour(), k: 0.5 + rand() * 0.5,
  }));
  const out = new Float32Array(3 * size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const g = Math.max(0, Math.min(1, 0.5 + Math.cos(angle) * (x / size - 0.5) + Math.sin(angle) * (y / size - 0.5)));
      const px = [0, 1, 2].map((c) => a[c]! * (1 - g) + b[c]! * g);
      for (const bl of blobs) {
        const w = bl.k * Math.exp(-((x - bl.x) ** 2 + (y - bl.y) ** 2) / (2 * bl.r * bl.r));
        for (let c = 0; c < 3; c++) px[c] = px[c]! * (1 - w) + bl.c[c]! * w;
      }
      for (let c = 0; c < 3; c++) out[(c * size + y) * size + x] = Math.max(-1, Math.min(1, px[c]!));
    }
  }
  return out;
}

/** Solves (A + lambda I) x = b for a symmetric positive semi-definite A (Gaussian elimination, partial pivoting). */
function solve(a: number[][], b: number[][], lambda: number): number[][] {
  const n = a.length;
  const m = a.map((row, i) => [...row.map((v, j) => v + (i === j ? lambda : 0)), ...b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    [m[c], m[p]] = [m[p]!, m[c]!];
    const piv = m[c]![c]!;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r]![c]! / piv;
      if (f !== 0) for (let k = c; k < m[r]!.length; k++) m[r]![k]! -= f * m[c]![k]!;
    }
  }
  return m.map((row, i) => row.slice(n).map((v) => v / m[i]![i]!));
}

/** Latent cells and the decoded colour averaged over each: the samples a fit uses or is checked on. */
function collectSamples(vae: AutoEncoder, opts: FitOptions): { xs: number[][]; ys: number[][] } {
  const k = opts.images ?? 8;
  const size = opts.size ?? 64;
  const f = vae.downFactor;
  if (!Number.isInteger(k) || k < 1 || !Number.isInteger(size) || size < f || size % f !== 0) {
    throw new FluxError('INVALID_ARGUMENT', `fitLatentRgb: images must be a positive integer and size a multiple of ${f}, got ${k} and ${size}`);
  }
  const channels = vae.params.zChannels;
  const cells = (size / f) ** 2;
  const rand = mulberry32(opts.seed ?? 0); // synthetic images: nothing here needs torch's generator
  const xs: number[][] = []; // [samples][channels + 1]
  const ys: number[][] = []; // [samples][3]
  for (let i = 0; i < k; i++) {
    const img = syntheticImage(size, rand);
    const [z, rgb] = tf.tidy(() => {
      const x = tf.tensor4d(img, [1, 3, size, size]);
      const zi = vae.encode(x, { mode: 'mean', tiling: false }); // [1, C, s, s]
      const dec = vae.decode(zi, { tiling: false }); // [1, 3, S, S]
      const pooled = tf.avgPool(tf.transpose(dec, [0, 2, 3, 1]) as tf.Tensor4D, f, f, 'valid'); // [1,S,S,3] -> [1,s,s,3]
      return [tf.transpose(zi, [0, 2, 3, 1]).dataSync(), pooled.dataSync()]; // [1,C,s,s] -> [1,s,s,C]
    });
    for (let c = 0; c < cells; c++) {
      xs.push([...Array.from(z.subarray(c * channels, (c + 1) * channels)), 1]);
      ys.push(Array.from(rgb.subarray(c * 3, c * 3 + 3)));
    }
    opts.onProgress?.(i + 1, k);
  }
  return { xs, ys };
}

/** R^2 per colour channel and RMSE of `beta` ([C+1][3], bias last) on the samples. */
function quality(xs: number[][], ys: number[][], beta: readonly (readonly number[])[]): { r2: [number, number, number]; rmse: number } {
  const mean = [0, 1, 2].map((c) => ys.reduce((a, y) => a + y[c]!, 0) / ys.length);
  const ssTot = [0, 0, 0];
  const ssRes = [0, 0, 0];
  for (let s = 0; s < xs.length; s++) {
    for (let c = 0; c < 3; c++) {
      const pred = xs[s]!.reduce((a, v, i) => a + v * beta[i]![c]!, 0);
      ssRes[c]! += (ys[s]![c]! - pred) ** 2;
      ssTot[c]! += (ys[s]![c]! - mean[c]!) ** 2;
    }
  }
  const r2 = ssTot.map((t, c) => (t > 0 ? 1 - ssRes[c]! / t : ssRes[c]! < 1e-12 ? 1 : 0)) as [number, number, number];
  return { r2, rmse: Math.sqrt(ssRes.reduce((a, b) => a + b, 0) / (3 * xs.length)) };
}

/**
 * Least-squares latent -> RGB map of `vae` (see the module comment). Runs `images` encodes and decodes of
 * `size`-pixel images (tiling off); leaves no tensors behind.
 */
export function fitLatentRgb(vae: AutoEncoder, opts: FitOptions = {}): LatentRgbFit {
  const { xs, ys } = collectSamples(vae, opts);
  const n = vae.params.zChannels + 1;
  const xtx = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const xty = Array.from({ length: n }, () => [0, 0, 0]);
  for (let s = 0; s < xs.length; s++) {
    const x = xs[s]!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) xtx[i]![j]! += x[i]! * x[j]!;
      for (let c = 0; c < 3; c++) xty[i]![c]! += x[i]! * ys[s]![c]!;
    }
  }
  const scale = xtx.reduce((a, row, i) => a + row[i]!, 0) / n;
  const beta = solve(xtx, xty, 1e-9 * scale + 1e-12); // [C+1][3], a whisker of ridge: constant latents stay solvable
  return { projection: { weights: beta.slice(0, n - 1), bias: beta[n - 1]! }, ...quality(xs, ys, beta), samples: xs.length };
}

/** How well `p` describes `vae` on images it was not fitted on (another `seed`): R^2 per channel and RMSE. */
export function evaluateLatentRgb(vae: AutoEncoder, p: LatentRgbProjection, opts: FitOptions = {}): Omit<LatentRgbFit, 'projection'> {
  const { xs, ys } = collectSamples(vae, { seed: 1, ...opts });
  return { ...quality(xs, ys, [...p.weights, p.bias]), samples: xs.length };
}

/** Latents [B, C, h, w] -> one RGB image of h x w per batch entry, through `p`, as the VAE's pixels are rounded. */
export function projectLatents(z: tf.Tensor4D, p: LatentRgbProjection): RgbImage[] {
  const [b, c, h, w] = z.shape;
  if (p.weights.length !== c || p.weights.some((r) => r.length !== 3) || p.bias.length !== 3) {
    throw new FluxError('INVALID_ARGUMENT', `the latent->RGB map has ${p.weights.length} x ${p.weights[0]?.length ?? 0} weights; the latents have ${c} channels (expected ${c} x 3 and 3 biases)`);
  }
  const bytes = tf.tidy(() => {
    const m = tf.tensor2d(p.weights.flat(), [c, 3]);
    const rgb = tf.add(tf.matMul(tf.reshape(tf.transpose(z, [0, 2, 3, 1]), [b * h * w, c]), m), tf.tensor1d([...p.bias])); // [B,C,h,w] -> [(B h w), C] -> [(B h w), 3]
    return tf.round(tf.mul(tf.clipByValue(tf.add(tf.mul(rgb, 0.5), 0.5), 0, 1), 255)).dataSync();
  });
  const n = h * w * 3;
  return Array.from({ length: b }, (_, i) => ({ width: w, height: h, data: Uint8Array.from(bytes.subarray(i * n, (i + 1) * n)) }));
}
