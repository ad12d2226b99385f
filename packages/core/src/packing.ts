/**
 * Latent shapes, 2x2 patch packing and position ids: BFL sampling.py `prepare` / `unpack`, identical to
 * diffusers FluxPipeline `_pack_latents` / `_unpack_latents` / `_prepare_latent_image_ids`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from './errors.ts';

/** Latent channels of the FLUX VAE. */
export const LATENT_CHANNELS = 16;
/** VAE downsampling factor. */
export const VAE_SCALE_FACTOR = 8;

function checkSize(width: number, height: number): void {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < 16) {
      throw new FluxError('invalid_size', `${name} must be an integer of at least 16 pixels, got ${v}`);
    }
  }
}

/** Unpacked latent shape [B, 16, 2*floor(H/16), 2*floor(W/16)] of a width x height image. */
export function latentShape(width: number, height: number, batch = 1): [number, number, number, number] {
  checkSize(width, height);
  const h = 2 * Math.floor(height / (VAE_SCALE_FACTOR * 2));
  const w = 2 * Math.floor(width / (VAE_SCALE_FACTOR * 2));
  return [batch, LATENT_CHANNELS, h, w];
}

/** [B, C, H, W] -> [B, (H/2)(W/2), C*4]: "b c (h ph) (w pw) -> b (h w) (c ph pw)". */
export function packLatents(x: tf.Tensor): tf.Tensor3D {
  const shape = x.shape as number[];
  if (shape.length !== 4 || shape[2] % 2 !== 0 || shape[3] % 2 !== 0) {
    throw new FluxError('invalid_shape', `packLatents expects [B, C, H, W] with even H and W, got [${shape.join(', ')}]`);
  }
  const [b, c, h, w] = shape;
  return tf.tidy(() =>
    tf.reshape(
      tf.transpose(
        tf.reshape(x, [b, c, h / 2, 2, w / 2, 2]), // [B, C, h, ph, w, pw]
        [0, 2, 4, 1, 3, 5], // -> [B, h, w, C, ph, pw]
      ),
      [b, (h / 2) * (w / 2), c * 4],
    ),
  );
}

/** [B, L, C*4] -> [B, C, H, W] for a width x height image (inverse of `packLatents`). */
export function unpackLatents(x: tf.Tensor, width: number, height: number): tf.Tensor4D {
  const [, , h, w] = latentShape(width, height);
  const shape = x.shape as number[];
  if (shape.length !== 3 || shape[1] !== (h / 2) * (w / 2) || shape[2] % 4 !== 0) {
    throw new FluxError(
      'invalid_shape',
      `unpackLatents: a ${width}x${height} image needs [B, ${(h / 2) * (w / 2)}, 4k] packed latents, got [${shape.join(', ')}]`,
    );
  }
  const [b, , d] = shape;
  return tf.tidy(() =>
    tf.reshape(
      tf.transpose(
        tf.reshape(x, [b, h / 2, w / 2, d / 4, 2, 2]), // [B, h, w, C, ph, pw]
        [0, 3, 1, 4, 2, 5], // -> [B, C, h, ph, w, pw]
      ),
      [b, d / 4, h, w],
    ),
  );
}

/** Image token count (H/16)*(W/16). */
export function imageTokens(width: number, height: number): number {
  const [, , h, w] = latentShape(width, height);
  return (h / 2) * (w / 2);
}

/** Image position ids [L, 3] as float32 data: token (r, c) in row-major order gets (0, r, c). */
export function imageIdsData(width: number, height: number): Float32Array {
  const [, , h, w] = latentShape(width, height);
  const rows = h / 2;
  const cols = w / 2;
  const ids = new Float32Array(rows * cols * 3);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = (r * cols + c) * 3;
      ids[i + 1] = r;
      ids[i + 2] = c;
    }
  }
  return ids;
}

/** Image position ids [L, 3] (diffusers `_prepare_latent_image_ids`, BFL `prepare` without the batch axis). */
export function imageIds(width: number, height: number): tf.Tensor2D {
  return tf.tensor2d(imageIdsData(width, height), [imageTokens(width, height), 3], 'float32');
}

/** Text position ids [Lt, 3], all zero. */
export function textIds(length: number): tf.Tensor2D {
  return tf.zeros([length, 3], 'float32') as tf.Tensor2D;
}
