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

/** What the loop hands to `onStep` after each step. */
export interface DenoiseStep {
  /** 1-based step just taken, of `total`. */
  step: number;
  total: number;
  /** x after the step, at noise level `sigma` (packed [B, L, 64]). */
  latents: tf.Tensor;
  /** The model's velocity prediction of this step (same shape). */
  velocity: tf.Tensor;
  /** The noise level the latents are now at (sigmas[step]; 0 after the last step). */
  sigma: number;
}

/**
 * Called after every step, like diffusers' `callback_on_step_end`. Ownership: `latents` and `velocity` belong to the
 * loop and are valid only during the call (read them, clone what you keep, never dispose them). Returning a tensor
 * of the latents' shape replaces the latents from the next step on; the loop then owns it (and disposes it). Returning
 * nothing (or anything that is not a tensor), or the `latents` given, changes nothing.
 */
export type StepCallback = (s: DenoiseStep) => void | tf.Tensor | Promise<void | tf.Tensor>;

/** x0 = latents - sigma * velocity: the clean-image estimate of a rectified-flow step (= latents when sigma is 0). */
export function denoisedEstimate(s: Pick<DenoiseStep, 'latents' | 'velocity' | 'sigma'>): tf.Tensor {
  return tf.tidy(() => tf.sub(s.latents, tf.mul(s.velocity, tf.scalar(s.sigma, 'float32'))));
}

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
  /** Passed to every model forward (progress inside a step: the transformer reports each block). */
  onBlock?: (step: number, block: number, blocks: number) => void;
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
      const onBlock = opts.onBlock;
      try {
        v = await model.forward({
          img: x,
          img_ids: opts.img_ids,
          txt: opts.txt,
          txt_ids: opts.txt_ids,
          timesteps: t,
          y: opts.y,
          ...(guidance ? { guidance } : {}),
        }, onBlock ? { onBlock: (block, blocks) => onBlock(i + 1, block, blocks) } : undefined);
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
        if (onStep) {
          let next: unknown = await onStep({ step: i + 1, total, latents: x, velocity: v, sigma: sigmas[i + 1]! });
          if (next === v) next = v.clone(); // the loop disposes its velocity below
          // Anything but a tensor (a callback written for void that returns a value) changes nothing.
          if (next instanceof tf.Tensor && next !== x) {
            if (!tf.util.arraysEqual(next.shape, x.shape) || next.isDisposed) {
              if (!next.isDisposed) next.dispose();
              throw new FluxError(
                'invalid_step_latents',
                `onStep returned a tensor of shape [${next.shape.join(', ')}]${next.isDisposed ? ' (disposed)' : ''}; return nothing, or new latents of shape [${x.shape.join(', ')}]`,
              );
            }
            x.dispose();
            x = next;
          }
        }
      } finally {
        t.dispose();
        v?.dispose();
      }
    }
    return x;
  } catch (e) {
    x.dispose();
    throw e;
  } finally {
    guidance?.dispose();
  }
}
