/**
 * Rectified-flow sampling schedules.
 *
 * `getSchedule` reproduces, value for value in float32, what diffusers' FluxPipeline feeds its
 * FlowMatchEulerDiscreteScheduler: `sigmas = np.linspace(1, 1/N, N)` (float64) cast to float32, shifted in
 * float32 numpy arithmetic (dev: `exp(mu) / (exp(mu) + (1/t - 1))`, schnell: shift 1.0 = identity), then a
 * terminal 0 appended. `modelTimesteps` gives the `t` the transformer receives (diffusers: `(sigma*1000)/1000`
 * in float32, which can differ from sigma by one ulp). `bflSchedule` is BFL sampling.py `get_schedule`
 * evaluated in float64 (BFL itself runs it in float32 torch ops; the values agree within a few float32 ulps).
 */
import type { SchedulerConfig } from './options.ts';
import { MODEL_DEFAULTS } from './options.ts';
import { FluxError } from './errors.ts';

const f32 = Math.fround;

/** diffusers `calculate_shift` / BFL `get_lin_function`: mu, linear in the image token count. */
export function calculateShift(
  imageSeqLen: number,
  baseSeqLen = 256,
  maxSeqLen = 4096,
  baseShift = 0.5,
  maxShift = 1.15,
): number {
  const m = (maxShift - baseShift) / (maxSeqLen - baseSeqLen);
  const b = baseShift - m * baseSeqLen;
  return imageSeqLen * m + b;
}

/** Image tokens of a width x height image: (H/16)*(W/16) after the VAE (8x) and 2x2 packing. */
export function imageSeqLen(width: number, height: number): number {
  return Math.floor(Math.floor(height / 8) / 2) * Math.floor(Math.floor(width / 8) / 2);
}

/** numpy.linspace(start, stop, num) in float64, element for element (`i*step + start`, last = stop). */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  const div = num - 1;
  const out = new Array<number>(num);
  if (div === 0) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

function checkSteps(numSteps: number): void {
  if (!Number.isInteger(numSteps) || numSteps < 1) {
    throw new FluxError('invalid_steps', `number of steps must be an integer >= 1, got ${numSteps}`);
  }
}

/**
 * The N+1 sigmas (float32 values, last one 0) diffusers' FluxPipeline uses for N steps at a given image
 * token count (only dev-style dynamic shifting depends on it). Defaults to the schnell scheduler config.
 */
export function getSchedule(
  numSteps: number,
  imageSeqLen: number,
  config: SchedulerConfig = MODEL_DEFAULTS.schnell.scheduler,
): number[] {
  checkSteps(numSteps);
  // FluxPipeline: np.linspace(1.0, 1/N, N) -> set_timesteps: np.array(sigmas).astype(np.float32)
  const base = linspace(1.0, 1 / numSteps, numSteps).map(f32);
  let sigmas: number[];
  if (config.use_dynamic_shifting) {
    const mu = calculateShift(
      imageSeqLen,
      config.base_image_seq_len,
      config.max_image_seq_len,
      config.base_shift,
      config.max_shift,
    );
    // numpy float32: math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0), python floats cast to float32
    const e = f32(Math.exp(mu));
    sigmas = base.map((t) => f32(e / f32(e + f32(f32(1 / t) - 1))));
  } else {
    // shift * sigmas / (1 + (shift - 1) * sigmas) in float32
    const s = f32(config.shift);
    const sm1 = f32(config.shift - 1);
    sigmas = base.map((t) => f32(f32(s * t) / f32(1 + f32(sm1 * t))));
  }
  sigmas.push(0);
  return sigmas;
}

/** The scheduler's `timesteps` (sigma*1000 in float32, one per step, no terminal value). */
export function schedulerTimesteps(sigmas: readonly number[], numTrainTimesteps = 1000): number[] {
  return sigmas.slice(0, -1).map((s) => f32(s * numTrainTimesteps));
}

/** The `t` in [0,1] the transformer gets at each step, as FluxPipeline passes it (`timestep / 1000`, float32). */
export function modelTimesteps(sigmas: readonly number[], numTrainTimesteps = 1000): number[] {
  return schedulerTimesteps(sigmas, numTrainTimesteps).map((t) => f32(t / numTrainTimesteps));
}

/**
 * BFL sampling.py `get_schedule(num_steps, image_seq_len, base_shift, max_shift, shift)` in float64:
 * `linspace(1, 0, N+1)`, shifted with mu from the token count when `shift` (dev), not shifted for schnell.
 */
export function bflSchedule(numSteps: number, imageSeqLen: number, baseShift = 0.5, maxShift = 1.15, shift = true): number[] {
  checkSteps(numSteps);
  const ts = linspace(1, 0, numSteps + 1);
  if (!shift) return ts;
  const mu = calculateShift(imageSeqLen, 256, 4096, baseShift, maxShift);
  const e = Math.exp(mu);
  return ts.map((t) => e / (e + (1 / t - 1)));
}
