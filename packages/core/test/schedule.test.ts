import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  bflSchedule,
  calculateShift,
  getSchedule,
  imageSeqLen,
  linspace,
  modelTimesteps,
  schedulerTimesteps,
} from '../src/schedule.ts';
import { MODEL_DEFAULTS } from '../src/options.ts';

interface Case {
  variant: 'schnell' | 'dev';
  steps: number;
  width: number;
  height: number;
  image_seq_len: number;
  mu: number;
  sigmas: number[];
  timesteps: number[];
  model_timesteps: number[];
  bfl: number[];
}
const fixture = JSON.parse(
  readFileSync(new URL('../../../test/fixtures/core/schedules.json', import.meta.url), 'utf8'),
) as { scheduler_configs: Record<string, Record<string, unknown>>; cases: Case[] };

/** Distance in float32 units in the last place between two float32 values. */
function ulps(a: number, b: number): number {
  const buf = new DataView(new ArrayBuffer(8));
  const ord = (x: number) => {
    buf.setFloat32(0, x, true);
    const i = buf.getInt32(0, true);
    return i < 0 ? -2147483648 - i : i;
  };
  return Math.abs(ord(a) - ord(b));
}

describe('schedule', () => {
  it('scheduler configs equal the FLUX.1 scheduler_config.json values used for the fixtures', () => {
    for (const v of ['schnell', 'dev'] as const) {
      const { num_train_timesteps, shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len, max_image_seq_len } =
        MODEL_DEFAULTS[v].scheduler;
      expect({ num_train_timesteps, shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len, max_image_seq_len }).toEqual(
        fixture.scheduler_configs[v],
      );
    }
  });

  it('covers steps 1,2,4,8,28,50 and square and non-square sizes', () => {
    expect(new Set(fixture.cases.map((c) => c.steps))).toEqual(new Set([1, 2, 4, 8, 28, 50]));
    expect(fixture.cases.some((c) => c.width !== c.height && c.variant === 'dev')).toBe(true);
  });

  for (const c of fixture.cases) {
    const label = `${c.variant} N=${c.steps} ${c.width}x${c.height}`;
    it(`matches diffusers FlowMatchEulerDiscreteScheduler exactly (float32): ${label}`, () => {
      expect(imageSeqLen(c.width, c.height)).toBe(c.image_seq_len);
      expect(calculateShift(c.image_seq_len)).toBe(c.mu);
      const sigmas = getSchedule(c.steps, c.image_seq_len, MODEL_DEFAULTS[c.variant].scheduler);
      expect(sigmas).toEqual(c.sigmas);
      expect(schedulerTimesteps(sigmas)).toEqual(c.timesteps);
      expect(modelTimesteps(sigmas)).toEqual(c.model_timesteps);
    });
    // BFL runs get_schedule in float32 torch ops (linspace kernel, reciprocal-multiply division): its values are
    // not bit-equal to diffusers' numpy ones. Observed: float64 formula <= 2 ulp, diffusers sigmas <= 3 ulp.
    it(`agrees with BFL get_schedule (torch float32) within 2-3 ulp: ${label}`, () => {
      const bfl = bflSchedule(c.steps, c.image_seq_len, 0.5, 1.15, c.variant === 'dev');
      expect(bfl).toHaveLength(c.bfl.length);
      const worstBfl = Math.max(...bfl.map((v, i) => ulps(Math.fround(v), c.bfl[i])));
      const sigmas = getSchedule(c.steps, c.image_seq_len, MODEL_DEFAULTS[c.variant].scheduler);
      const worstDiffusers = Math.max(...sigmas.map((v, i) => ulps(v, c.bfl[i])));
      expect(worstBfl).toBeLessThanOrEqual(2);
      expect(worstDiffusers).toBeLessThanOrEqual(3);
    });
  }

  it('linspace follows numpy (endpoint exact, single element = start)', () => {
    expect(linspace(1, 0.25, 4)).toEqual([1, 0.75, 0.5, 0.25]);
    expect(linspace(1, 1, 1)).toEqual([1]);
    expect(linspace(1, 0, 0)).toEqual([]);
  });

  it('schnell schedule is linspace(1, 0, N+1) regardless of size; dev shifts toward 1 more for larger images', () => {
    expect(getSchedule(4, 4096)).toEqual([1, 0.75, 0.5, 0.25, 0]);
    const small = getSchedule(4, 256, MODEL_DEFAULTS.dev.scheduler);
    const large = getSchedule(4, 4096, MODEL_DEFAULTS.dev.scheduler);
    for (let i = 1; i < 4; i++) expect(large[i]).toBeGreaterThan(small[i]);
  });

  it('rejects a step count that is not a positive integer', () => {
    for (const n of [0, -1, 1.5, Number.NaN]) expect(() => getSchedule(n, 1024)).toThrow(/steps/);
  });
});
