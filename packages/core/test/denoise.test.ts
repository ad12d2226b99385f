import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../test/harness/compare.ts';
import { loadFixture, type FixtureTensor } from '../../../test/harness/fixtures.ts';
import { AbortError, denoise, denoisedEstimate } from '../src/denoise.ts';
import { FluxError } from '../src/errors.ts';
import type { FlowModel, FlowModelInputs } from '../src/flow-model.ts';
import { img2imgPlan, noiseLatents } from '../src/img2img.ts';
import { MODEL_DEFAULTS } from '../src/options.ts';
import { getSchedule, imageSeqLen, modelTimesteps } from '../src/schedule.ts';

// Fixture: the diffusers FluxPipeline / FluxImg2ImgPipeline loop (scheduler.step in float32) around a fake
// linear flow model v = x*c1 + t*c2 (+ g*c3), t = timestep/1000 (gen_core.py gen_denoise).
let fx: Record<string, FixtureTensor>;
beforeAll(async () => {
  fx = await loadFixture('core', 'denoise.safetensors');
});

const t3 = (name: string) => tf.tensor(fx[name].data as Float32Array, fx[name].shape, 'float32');

/** The same fake model as gen_core.py, recording the timesteps and guidance it was given. */
class LinearFlow implements FlowModel {
  readonly seen: { t: number[]; g?: number[] }[] = [];
  readonly guidanceEmbed: boolean;
  private readonly c: tf.Tensor[];
  constructor(
    guidanceEmbed: boolean,
    c: tf.Tensor[],
  ) {
    this.guidanceEmbed = guidanceEmbed;
    this.c = c;
  }
  forward({ img, timesteps, guidance }: FlowModelInputs): tf.Tensor {
    this.seen.push({ t: Array.from(timesteps.dataSync()), g: guidance ? Array.from(guidance.dataSync()) : undefined });
    return tf.tidy(() => {
      const b = img.shape[0];
      let v = tf.add(tf.mul(img, this.c[0]), tf.mul(tf.reshape(timesteps, [b, 1, 1]), this.c[1]));
      if (guidance) v = tf.add(v, tf.mul(tf.reshape(guidance, [b, 1, 1]), this.c[2]));
      return v;
    });
  }
}

/** Bit-exact on cpu, wasm and tensorflow (IEEE float32 elementwise ops, as torch's CPU kernels); 1e-6 on others. */
function expectStep(actual: tf.Tensor, expected: Float32Array, label: string): void {
  const exact = ['cpu', 'wasm', 'tensorflow'].includes(tf.getBackend());
  expectClose(actual, expected, exact ? { relL2: 0, maxAbs: 0, label } : { relL2: 1e-6, label });
}

function stateOf(name: string, i: number): Float32Array {
  const { data, shape } = fx[name];
  const n = shape.slice(1).reduce((a, b) => a * b, 1);
  return (data as Float32Array).subarray(i * n, (i + 1) * n);
}

function inputs(model: FlowModel, img: tf.Tensor) {
  // Only `img`/`timesteps`/`guidance` reach the fake model; the others are placeholders of the right rank.
  return {
    model,
    img,
    img_ids: tf.zeros([16, 3]),
    txt: tf.zeros([2, 4, 8]),
    txt_ids: tf.zeros([4, 3]),
    y: tf.zeros([2, 8]),
  };
}

describe('denoise (Euler, float32 like diffusers scheduler.step)', () => {
  const cases = [
    { key: 'schnell4', variant: 'schnell' as const, steps: 4, width: 512, height: 512, guidance: undefined },
    { key: 'dev8', variant: 'dev' as const, steps: 8, width: 768, height: 384, guidance: 3.5 },
  ];
  for (const c of cases) {
    it(`matches the diffusers loop at every step: ${c.key}`, async () => {
      const before = tf.memory().numTensors;
      const consts = [t3('c1'), t3('c2'), t3('c3')];
      const x = t3('x');
      const model = new LinearFlow(c.variant === 'dev', consts);
      const sigmas = getSchedule(c.steps, imageSeqLen(c.width, c.height), MODEL_DEFAULTS[c.variant].scheduler);
      expect(sigmas).toEqual(Array.from(fx[`${c.key}.sigmas`].data as Float32Array));
      const ins = inputs(model, x);
      const steps: number[] = [];
      const out = await denoise({
        ...ins,
        sigmas,
        guidance: c.guidance,
        onStep: ({ step, total, latents }) => {
          steps.push(step);
          expect(total).toBe(c.steps);
          expectStep(latents, stateOf(`${c.key}.states`, step), `${c.key} step ${step}`);
        },
      });
      expect(steps).toEqual(Array.from({ length: c.steps }, (_, i) => i + 1));
      expectStep(out, stateOf(`${c.key}.states`, c.steps), `${c.key} final`);
      expect(model.seen.map((s) => s.t[0])).toEqual(modelTimesteps(sigmas));
      expect(model.seen.every((s) => s.t.length === 2)).toBe(true);
      if (c.guidance !== undefined) expect(model.seen.every((s) => s.g?.every((g) => g === 3.5))).toBe(true);
      else expect(model.seen.every((s) => s.g === undefined)).toBe(true);
      expect(x.isDisposed).toBe(false); // the caller's start latents are left alone
      tf.dispose([out, x, ins.img_ids, ins.txt, ins.txt_ids, ins.y, ...consts]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('img2img: noising at t_start and the loop from there match FluxImg2ImgPipeline (dev, 10 steps, strength 0.6)', async () => {
    const before = tf.memory().numTensors;
    const consts = [t3('c1'), t3('c2'), t3('c3')];
    const full = getSchedule(10, imageSeqLen(512, 512), MODEL_DEFAULTS.dev.scheduler);
    expect(full).toEqual(Array.from(fx['img2img.sigmas'].data as Float32Array));
    const plan = img2imgPlan(full, 0.6);
    expect(plan.tStart).toBe((fx['img2img.t_start'].data as Int32Array)[0]);
    expect(plan.steps).toBe(fx['img2img.states'].shape[0] - 1);
    const x0 = t3('img2img.x0');
    const noise = t3('img2img.noise');
    const start = noiseLatents(x0, noise, plan.sigmaStart);
    expectStep(start, stateOf('img2img.states', 0), 'img2img start (scale_noise)');
    const ins = inputs(new LinearFlow(true, consts), start);
    const out = await denoise({ ...ins, sigmas: plan.sigmas, guidance: 3.5 });
    expectStep(out, stateOf('img2img.states', plan.steps), 'img2img final');
    tf.dispose([out, start, x0, noise, ins.img_ids, ins.txt, ins.txt_ids, ins.y, ...consts]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('zero steps returns a copy of the start latents', async () => {
    const x = tf.ones([2, 16, 64]);
    const before = tf.memory().numTensors;
    const ins = inputs(new LinearFlow(false, []), x);
    const out = await denoise({ ...ins, sigmas: [0] });
    expect(out).not.toBe(x);
    expectClose(out, x.dataSync(), { relL2: 0, maxAbs: 0 });
    tf.dispose([out, ins.img_ids, ins.txt, ins.txt_ids, ins.y]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('an AbortSignal stops between steps with FluxError code "aborted" and leaks nothing', async () => {
    const consts = [tf.ones([16, 64]), tf.ones([16, 64]), tf.ones([16, 64])];
    const x = tf.ones([2, 16, 64]);
    const ins = inputs(new LinearFlow(false, consts), x);
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    const model = ins.model as LinearFlow;
    const err = await denoise({
      ...ins,
      sigmas: getSchedule(8, 1024),
      signal: ac.signal,
      onStep: ({ step }) => {
        if (step === 3) ac.abort();
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(err).toBeInstanceOf(FluxError);
    expect((err as FluxError).code).toBe('aborted');
    expect((err as AbortError).step).toBe(3);
    expect((err as Error).message).toMatch(/aborted after 3 of 8 steps/);
    expect(model.seen).toHaveLength(3);
    expect(tf.memory().numTensors).toBe(before);

    // aborted before the first step: the model is never called
    const ac2 = new AbortController();
    ac2.abort();
    const m2 = new LinearFlow(false, consts);
    await expect(denoise({ ...ins, model: m2, sigmas: getSchedule(2, 1024), signal: ac2.signal })).rejects.toMatchObject({
      code: 'aborted',
      step: 0,
    });
    expect(m2.seen).toHaveLength(0);
    expect(tf.memory().numTensors).toBe(before);

    // an abort from a timer while the loop runs (the loop yields between steps)
    const ac3 = new AbortController();
    const slow: FlowModel = {
      guidanceEmbed: false,
      forward: async ({ img }) => {
        await new Promise((r) => setTimeout(r, 5));
        return tf.zerosLike(img);
      },
    };
    setTimeout(() => ac3.abort(), 12);
    await expect(denoise({ ...ins, model: slow, sigmas: getSchedule(50, 1024), signal: ac3.signal })).rejects.toMatchObject({
      code: 'aborted',
    });
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, ins.img_ids, ins.txt, ins.txt_ids, ins.y, ...consts]);
  });

  it('rejects a missing guidance for a guidance model and a wrong output shape, without leaking', async () => {
    const x = tf.ones([2, 16, 64]);
    const ins = inputs(new LinearFlow(true, []), x);
    const before = tf.memory().numTensors;
    await expect(denoise({ ...ins, sigmas: getSchedule(2, 1024) })).rejects.toMatchObject({ code: 'missing_guidance' });
    const bad: FlowModel = { guidanceEmbed: false, forward: () => tf.zeros([2, 16, 63]) };
    await expect(denoise({ ...ins, model: bad, sigmas: getSchedule(2, 1024) })).rejects.toMatchObject({
      code: 'invalid_model_output',
      message: expect.stringMatching(/\[2, 16, 63\].*\[2, 16, 64\]/),
    });
    const throwing: FlowModel = {
      guidanceEmbed: false,
      forward: () => {
        throw new Error('boom');
      },
    };
    await expect(denoise({ ...ins, model: throwing, sigmas: getSchedule(2, 1024) })).rejects.toThrow('boom');
    await expect(denoise({ ...ins, model: bad, sigmas: [1, 0], timesteps: [1, 0.5] })).rejects.toMatchObject({
      code: 'invalid_schedule',
    });
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, ins.img_ids, ins.txt, ins.txt_ids, ins.y]);
  });

  it('onStep: the velocity and sigma give the x0 estimate, returned latents replace the state, nothing leaks', async () => {
    const consts = [tf.fill([16, 64], 0.5), tf.fill([16, 64], 0.25), tf.zeros([16, 64])];
    const x = tf.ones([2, 16, 64]);
    const ins = inputs(new LinearFlow(false, consts), x);
    const sigmas = getSchedule(4, 1024);
    const before = tf.memory().numTensors;
    const plain = await denoise({ ...ins, sigmas });
    const seen: number[] = [];
    const kept = await denoise({
      ...ins,
      sigmas,
      onStep: (s) => {
        seen.push(s.sigma);
        const x0 = denoisedEstimate(s); // latents - sigma * v
        const want = tf.tidy(() => tf.sub(s.latents, tf.mul(s.velocity, s.sigma)));
        expectClose(x0, want.dataSync() as Float32Array, { relL2: 0, maxAbs: 0 });
        tf.dispose([x0, want]);
        return s.latents; // the same tensor: no change
      },
    });
    expect(seen).toEqual(sigmas.slice(1));
    expectClose(kept, plain.dataSync() as Float32Array, { relL2: 0, maxAbs: 0 });
    // replacing the latents after step 2 by zeros changes the result; the loop owns and frees what it was given
    const blocks: [number, number, number][] = [];
    const changed = await denoise({
      ...ins,
      sigmas,
      onBlock: (step, block, n) => blocks.push([step, block, n]),
      onStep: (s) => (s.step === 2 ? tf.zerosLike(s.latents) : undefined),
    });
    expect(blocks).toEqual([]); // the fake model reports no blocks
    expect(Array.from(changed.dataSync())).not.toEqual(Array.from(plain.dataSync()));
    // a callback written for void that returns something else changes nothing
    const truthy = await denoise({ ...ins, sigmas, onStep: () => true as never });
    expectClose(truthy, plain.dataSync() as Float32Array, { relL2: 0, maxAbs: 0 });
    truthy.dispose();
    // a wrong shape is refused (and disposed)
    await expect(denoise({ ...ins, sigmas, onStep: () => tf.zeros([1, 2]) })).rejects.toMatchObject({ code: 'invalid_step_latents' });
    tf.dispose([plain, kept, changed]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, ins.img_ids, ins.txt, ins.txt_ids, ins.y, ...consts]);
  });

  it('passes onBlock to the model forward with the step number', async () => {
    const x = tf.ones([1, 4, 64]);
    const ins = inputs(new LinearFlow(false, []), x);
    const model: FlowModel = {
      guidanceEmbed: false,
      forward: (_inputs, o) => {
        for (let b = 1; b <= 3; b++) o?.onBlock?.(b, 3);
        return tf.zerosLike(x);
      },
    };
    const blocks: string[] = [];
    const out = await denoise({ ...ins, model, sigmas: getSchedule(2, 1024), onBlock: (s, b, n) => blocks.push(`${s}:${b}/${n}`) });
    expect(blocks).toEqual(['1:1/3', '1:2/3', '1:3/3', '2:1/3', '2:2/3', '2:3/3']);
    tf.dispose([out, x, ins.img_ids, ins.txt, ins.txt_ids, ins.y]);
  });
});
