/**
 * diffusers `AutoencoderKL` tiling (autoencoder_kl.py `tiled_decode`, `_tiled_encode`, `blend_v`, `blend_h`) on host
 * arrays, shared by encode and decode.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { TilePlan } from './autoencoder.ts';

/**
 * diffusers `AutoencoderKL.tiled_decode` / `_tiled_encode` (autoencoder_kl.py): input tiles of `tileIn` cells every
 * floor(tileIn * (1 - overlap)) cells, each run alone through `run`; each output tile blended in place with the
 * (already blended) tile above (blend_v) then the one to its left (blend_h) over floor(tileOut * overlap) cells, then
 * cropped to tileOut - blend. Blending runs on host arrays in the reference's order. input [B, h, w, c] NHWC ->
 * output [B, C, H, W] NCHW.
 */
export function runTiled(
  input: tf.Tensor4D,
  plan: TilePlan,
  run: (tile: tf.Tensor4D) => tf.Tensor4D,
  onTile?: (done: number, total: number) => void,
): tf.Tensor4D {
  const [b, h, w, cin] = input.shape;
  const T = plan.tileIn;
  const stride = Math.floor(T * (1 - plan.overlapFactor));
  const tiles = Math.ceil(h / stride) * Math.ceil(w / stride);
  const blendExtent = Math.floor(plan.tileOut * plan.overlapFactor);
  const rowLimit = plan.tileOut - blendExtent;
  let c = 0;
  const rows: Tile[][] = [];
  for (let i = 0; i < h; i += stride) {
    const row: Tile[] = [];
    for (let j = 0; j < w; j += stride) {
      const th = Math.min(T, h - i);
      const tw = Math.min(T, w - j);
      const tile = tf.tidy(() => {
        const out = run(tf.slice(input, [0, i, j, 0], [b, th, tw, cin]));
        const [, oh, ow, oc] = out.shape;
        c = oc;
        return { data: Float32Array.from(tf.transpose(out, [0, 3, 1, 2]).dataSync()), n: b * oc, h: oh, w: ow }; // [B,H,W,C] -> [B,C,H,W]
      });
      row.push(tile);
      onTile?.(rows.length * Math.ceil(w / stride) + row.length, tiles);
    }
    rows.push(row);
  }
  rows.forEach((row, i) =>
    row.forEach((tile, j) => {
      if (i > 0) blendV(rows[i - 1][j], tile, blendExtent);
      if (j > 0) blendH(row[j - 1], tile, blendExtent);
    }),
  );
  const outH = rows.reduce((s, row) => s + Math.min(rowLimit, row[0].h), 0);
  const outW = rows[0].reduce((s, tile) => s + Math.min(rowLimit, tile.w), 0);
  const out = new Float32Array(b * c * outH * outW);
  let y0 = 0;
  for (const row of rows) {
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

/** One tile's output on the host: [n = B*C, h, w] row-major. */
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
