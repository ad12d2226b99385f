/**
 * The rectified-flow Euler loop (BFL sampling.py `denoise`, diffusers FlowMatchEulerDiscreteScheduler.step):
 * for each step i, `x += (sigma[i+1] - sigma[i]) * v(x, t_i)` in float32, exactly as diffusers computes it
 * (`dt = sigma_next - sigma` rounded to float32, then `sample + dt * model_output`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from './errors.ts';
import type { FlowModel } from './flow-model.ts';
import { modelTimesteps } from './schedule.ts';

/** Thrown when the AbortSignal fires; the run stops between two steps. */
export class AbortError extends FluxError {
  readonly step: number;
  readonly total: number;
  constructor(step: number, total: number, reason?: unknown) {
    super('aborted', `generation aborted after ${step} of ${total} steps`, reason === undefined ? undefined : { cause: reason });
    this.name = 'AbortError';
    this.step = step;
    this.total = total;
  }
}

/** Called after every step; `latents` is valid only during the call (clone it to keep it). */
export type StepCallback = (step: number, total: number, latents: tf.Tensor) => void | Promise<void>;

export interface DenoiseOptions {
  model: FlowModel;
  /** Start latents, packed [B, L, 64] (not disposed). */
  img: tf.Tensor;
  img_ids: tf.Tensor;
  txt: tf.Tensor;
  txt_ids: tf.Tensor;
  /** CLIP pooled [B, 768]. */
  y: tf.Tensor;
  /** N+1 sigmas from `getSchedule` (or an img2img slice of it); N steps are run. */
  sigmas: readonly number[];
  /** t given to the model per step (N values); default `modelTimesteps(sigmas)` as diffusers passes them. */
  timesteps?: readonly number[];
  /** Guidance value for models with `guidanceEmbed` (required there, ignored otherwise). */
  guidance?: number;
  onStep?: StepCallback;
  /** Checked before every step; when aborted the loop disposes its tensors and throws `AbortError`. */
  signal?: AbortSignal;
}

/** Runs the Euler loop and returns the final latents (a new tensor the caller owns). */
export async function denoise(opts: DenoiseOptions): Promise<tf.Tensor> {
  const { model, img, sigmas, signal, onStep } = opts;
  const total = sigmas.length - 1;
  if (total < 0) throw new FluxError('invalid_schedule', 'denoise needs at least one sigma (the end value)');
  const ts = opts.timesteps ?? modelTimesteps(sigmas);
  if (ts.length !== total) {
    throw new FluxError('invalid_schedule', `denoise got ${sigmas.length} sigmas but ${ts.length} timesteps; expected ${total}`);
  }
  if (model.guidanceEmbed && opts.guidance === undefined) {
    throw new FluxError('missing_guidance', 'this model embeds guidance (FLUX.1 dev): pass a guidance value');
  }
  const batch = img.shape[0];
  const guidance = model.guidanceEmbed ? tf.fill([batch], opts.guidance as number, 'float32') : undefined;

  let x = img.clone();
  try {
    for (let i = 0; i < total; i++) {
      if (signal !== undefined) {
        // Let a pending abort (timer, request close) be delivered between steps.
        await new Promise((r) => setTimeout(r, 0));
        if (signal.aborted) throw new AbortError(i, total, signal.reason);
      }
      const t = tf.fill([batch], ts[i], 'float32');
      let v: tf.Tensor | undefined;
      try {
        v = await model.forward({
          img: x,
          img_ids: opts.img_ids,
          txt: opts.txt,
          txt_ids: opts.txt_ids,
          timesteps: t,
          y: opts.y,
          ...(guidance ? { guidance } : {}),
        });
        if (!tf.util.arraysEqual(v.shape, x.shape)) {
          throw new FluxError(
            'invalid_model_output',
            `the flow model returned shape [${v.shape.join(', ')}], expected [${x.shape.join(', ')}]`,
          );
        }
        const dt = Math.fround(sigmas[i + 1] - sigmas[i]);
        const vv = v;
        const prev = x;
        x = tf.tidy(() => tf.add(prev, tf.mul(vv, tf.scalar(dt, 'float32'))));
        prev.dispose();
      } finally {
        t.dispose();
        v?.dispose();
      }
      if (onStep) await onStep(i + 1, total, x);
    }
    return x;
  } catch (e) {
    x.dispose();
    throw e;
  } finally {
    guidance?.dispose();
  }
}
