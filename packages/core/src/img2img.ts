/**
 * Image-to-image start point, as diffusers FluxImg2ImgPipeline: `get_timesteps` picks the first step from
 * `strength`, and the scheduler's `scale_noise` mixes the image latents with noise at that step's sigma.
 *
 * strength 1 starts from pure noise (the image is ignored, so the pipeline need not encode it);
 * strength 0 runs zero steps and returns the image latents unchanged. NOTE: diffusers raises a ValueError
 * for strength 0 ("the number of pipeline steps is 0 which is < 1"); this library returns the input instead.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from './errors.ts';

export interface Img2ImgStart {
  /** Index of the first sigma used (`t_start`, the scheduler's begin index). */
  tStart: number;
  /** Steps actually run: N - tStart. */
  steps: number;
}

export interface Img2ImgPlan extends Img2ImgStart {
  /** The sigmas from tStart on (steps + 1 values): pass these to `denoise`. */
  sigmas: number[];
  /** sigma the image latents are noised to (`sigmas[tStart]`; 0 when no step runs). */
  sigmaStart: number;
  /** False at strength 1: the start is pure noise and the image need not be encoded. */
  usesImage: boolean;
}

function checkStrength(strength: number): void {
  if (typeof strength !== 'number' || !Number.isFinite(strength) || strength < 0 || strength > 1) {
    throw new FluxError('invalid_strength', `strength must be a number from 0 to 1, got ${String(strength)}`);
  }
}

/** diffusers `get_timesteps`: init = min(N*strength, N); t_start = int(max(N - init, 0)); N - t_start steps. */
export function img2imgStart(numSteps: number, strength: number): Img2ImgStart {
  if (!Number.isInteger(numSteps) || numSteps < 1) {
    throw new FluxError('invalid_steps', `number of steps must be an integer >= 1, got ${numSteps}`);
  }
  checkStrength(strength);
  const init = Math.min(numSteps * strength, numSteps);
  const tStart = Math.trunc(Math.max(numSteps - init, 0));
  return { tStart, steps: numSteps - tStart };
}

/** The img2img slice of a full N-step schedule (`getSchedule(N, ...)`, N+1 sigmas). */
export function img2imgPlan(sigmas: readonly number[], strength: number): Img2ImgPlan {
  const n = sigmas.length - 1;
  const { tStart, steps } = img2imgStart(n, strength);
  const rest = sigmas.slice(tStart);
  return { tStart, steps, sigmas: rest, sigmaStart: rest[0], usesImage: strength < 1 };
}

/** Scheduler `scale_noise`: sigma*noise + (1 - sigma)*x0 in float32 (any matching shapes; a new tensor). */
export function noiseLatents(x0: tf.Tensor, noise: tf.Tensor, sigma: number): tf.Tensor {
  if (!tf.util.arraysEqual(x0.shape, noise.shape)) {
    throw new FluxError('invalid_shape', `image latents [${x0.shape.join(', ')}] and noise [${noise.shape.join(', ')}] differ in shape`);
  }
  const s = Math.fround(sigma);
  return tf.tidy(() =>
    tf.add(tf.mul(tf.scalar(s, 'float32'), noise), tf.mul(tf.scalar(Math.fround(1 - s), 'float32'), x0)),
  );
}
