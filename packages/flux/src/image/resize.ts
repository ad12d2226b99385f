/**
 * Pillow's `Image.resize(size, Image.LANCZOS)` for 8-bit RGB, value for value (Pillow src/libImaging/Resample.c:
 * `precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc`): a separable
 * Lanczos-3 filter widened by the downscale factor, coefficients in 22-bit fixed point, horizontal pass first
 * (only over the rows the vertical pass reads). This is what diffusers' VaeImageProcessor.resize does for PIL
 * input (its default `resample` is "lanczos"), so img2img inputs match FluxImg2ImgPipeline given a PIL image.
 */
import { ImageError, type RgbImage } from './types.ts';

const PRECISION_BITS = 32 - 8 - 2;
const SUPPORT = 3;

function sinc(x: number): number {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

function lanczos(x: number): number {
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

interface Coeffs {
  ksize: number;
  bounds: Int32Array; // [xmin, count] per output pixel
  kk: Int32Array; // ksize fixed-point weights per output pixel
}

function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    k.fill(0);
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x]! / ww : k[x]!;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 2 ** (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / 2 ** PRECISION_BITS);
}

/** One separable pass along x (`horizontal`) or y over an RGB image; `rowOffset` shifts the y bounds. */
function pass(src: RgbImage, c: Coeffs, horizontal: boolean, outSize: number, first = 0, count?: number): RgbImage {
  const half = 1 << (PRECISION_BITS - 1);
  const { width: w, height: h, data } = src;
  if (horizontal) {
    const rows = count ?? h;
    const out = new Uint8Array(outSize * rows * 3);
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + first) * w * 3;
      for (let xx = 0; xx < outSize; xx++) {
        const xmin = c.bounds[xx * 2]!;
        const n = c.bounds[xx * 2 + 1]!;
        const k = xx * c.ksize;
        for (let ch = 0; ch < 3; ch++) {
          let ss = half;
          for (let x = 0; x < n; x++) ss += data[rowIn + (x + xmin) * 3 + ch]! * c.kk[k + x]!;
          out[(y * outSize + xx) * 3 + ch] = clip8(ss);
        }
      }
    }
    return { width: outSize, height: rows, data: out };
  }
  const out = new Uint8Array(w * outSize * 3);
  for (let yy = 0; yy < outSize; yy++) {
    const ymin = c.bounds[yy * 2]! - first;
    const n = c.bounds[yy * 2 + 1]!;
    const k = yy * c.ksize;
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < 3; ch++) {
        let ss = half;
        for (let y = 0; y < n; y++) ss += data[((y + ymin) * w + x) * 3 + ch]! * c.kk[k + y]!;
        out[(yy * w + x) * 3 + ch] = clip8(ss);
      }
    }
  }
  return { width: w, height: outSize, data: out };
}

/**
 * Pillow LANCZOS resize of an RGB image to width x height (a copy when the size is unchanged).
 * NOTE: Pillow 13 runs the vertical pass first when the width grows while the height shrinks (found by comparing
 * against Pillow itself, test/fixtures/pipeline/resize.safetensors); otherwise horizontal first, over only the rows
 * the vertical pass reads (the result is the same as over all rows).
 */
export function resizeLanczos(img: RgbImage, width: number, height: number): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageError('IMAGE_SIZE', `resize target must be positive integers, got ${width}x${height}`);
  }
  const { width: w0, height: h0 } = img;
  if (w0 === width && h0 === height) return { width, height, data: img.data.slice() };
  const needH = w0 !== width;
  const needV = h0 !== height;
  const horiz = precomputeCoeffs(w0, width);
  const vert = precomputeCoeffs(h0, height);
  if (!needH) return pass(img, vert, false, height);
  if (!needV) return pass(img, horiz, true, width);
  if (width > w0 && height < h0) return pass(pass(img, vert, false, height), horiz, true, width);
  const first = vert.bounds[0]!;
  const last = vert.bounds[height * 2 - 2]! + vert.bounds[height * 2 - 1]!;
  return pass(pass(img, horiz, true, width, first, last - first), vert, false, height, first);
}
