import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../test/harness/fixtures.ts';
import { img2imgPlan, img2imgStart, noiseLatents } from '../src/img2img.ts';
import { MODEL_DEFAULTS } from '../src/options.ts';
import { getSchedule, imageSeqLen, schedulerTimesteps } from '../src/schedule.ts';

interface Row {
  variant: 'schnell' | 'dev';
  steps_in: number;
  strength: number;
  t_start: number;
  steps: number;
  timesteps: number[];
}
// FluxImg2ImgPipeline.get_timesteps called on a stub holding the real scheduler (gen_core.py gen_img2img).
const fx = await loadJsonFixture<{ rows: Row[] }>('core', 'img2img.json');

describe('img2img start (diffusers FluxImg2ImgPipeline.get_timesteps)', () => {
  it('covers strength 0 and 1 and many step counts', () => {
    expect(fx.rows.some((r) => r.strength === 0)).toBe(true);
    expect(fx.rows.some((r) => r.strength === 1)).toBe(true);
    expect(fx.rows.length).toBeGreaterThan(200);
  });

  it('t_start, step count and the remaining timesteps match for every row', () => {
    for (const r of fx.rows) {
      const label = `${r.variant} N=${r.steps_in} strength=${r.strength}`;
      const s = img2imgStart(r.steps_in, r.strength);
      expect(s, label).toEqual({ tStart: r.t_start, steps: r.steps });
      const plan = img2imgPlan(getSchedule(r.steps_in, imageSeqLen(512, 512), MODEL_DEFAULTS[r.variant].scheduler), r.strength);
      expect(plan.tStart, label).toBe(r.t_start);
      expect(plan.sigmas, label).toHaveLength(r.steps + 1);
      expect(schedulerTimesteps(plan.sigmas), label).toEqual(r.timesteps);
    }
  });

  it('strength 1 starts from pure noise and needs no image; strength 0 runs no step and keeps the image', () => {
    const full = getSchedule(4, 1024);
    const one = img2imgPlan(full, 1);
    expect(one).toMatchObject({ tStart: 0, steps: 4, sigmaStart: 1, usesImage: false });
    const zero = img2imgPlan(full, 0);
    expect(zero).toMatchObject({ tStart: 4, steps: 0, sigmas: [0], sigmaStart: 0, usesImage: true });

    const before = tf.memory().numTensors;
    const x0 = tf.tensor([0.5, -2, 3.25, 0]);
    const noise = tf.tensor([1, 0.25, -1, 7]);
    const atOne = noiseLatents(x0, noise, one.sigmaStart);
    expect(Array.from(atOne.dataSync())).toEqual([1, 0.25, -1, 7]);
    const atZero = noiseLatents(x0, noise, zero.sigmaStart);
    expect(Array.from(atZero.dataSync())).toEqual([0.5, -2, 3.25, 0]);
    const mid = noiseLatents(x0, noise, 0.75);
    // sigma*noise + (1-sigma)*x0 in float32
    expect(Array.from(mid.dataSync())).toEqual([0.875, -0.3125, 0.0625, 5.25]);
    tf.dispose([x0, noise, atOne, atZero, mid]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects strength outside 0..1, NaN, and bad step counts or shapes', () => {
    for (const s of [-0.1, 1.01, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => img2imgStart(4, s)).toThrow(/strength must be a number from 0 to 1/);
    }
    expect(() => img2imgStart(0, 0.5)).toThrow(/steps/);
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([3, 2]);
    expect(() => noiseLatents(a, b, 0.5)).toThrow(/differ in shape/);
    tf.dispose([a, b]);
  });
});
