/**
 * Progress from inside every stage (src/pipeline/progress.ts through the pipeline): on the tiny model every stage
 * reports, in order, with counts that climb 1..total within each run of a stage; the transformer reports its blocks
 * within each step; an abort from a progress callback stops the run with the one AbortError.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { AbortError } from '@flux-ts/core';
import { diffusersLocation } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import type { ProgressEvent } from '../../src/pipeline/progress.ts';
import { TINY as MODEL } from './helpers.ts';

/** Splits the events into runs of one stage (a new run starts when the stage or part changes to a lower count). */
function runs(events: ProgressEvent[]): { stage: string; events: ProgressEvent[] }[] {
  const out: { stage: string; events: ProgressEvent[] }[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    const prev = last?.events[last.events.length - 1];
    if (last && last.stage === e.stage && prev && e.done > prev.done) last.events.push(e);
    else out.push({ stage: e.stage, events: [e] });
  }
  return out;
}

describe('onProgress', () => {
  it('text, load, denoise (blocks within steps), decode: in order, counts 1..total per stage run', async () => {
    // streamed (auto keeps the tiny transformer resident in bf16 on the native backend: then 'load' comes first)
    const pipe = new FluxPipeline(diffusersLocation(MODEL), { transformer: 'streamed' });
    const events: ProgressEvent[] = [];
    const stages: string[] = [];
    const before = tf.memory().numTensors;
    const res = await pipe.generate({
      prompt: 'a lighthouse',
      width: 32,
      height: 48,
      steps: 3,
      seed: 4,
      onProgress: (e) => events.push(e),
      onStage: (s, ev) => stages.push(`${s}:${ev}`),
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(stages).toEqual(['text:start', 'text:end', 'denoise:start', 'denoise:end', 'decode:start', 'decode:end']);
    const r = runs(events);
    expect(r.map((x) => x.stage)).toEqual(['text', 'denoise', 'load', 'decode']);
    for (const run of r) {
      expect(run.events.map((e) => e.done), run.stage).toEqual(Array.from({ length: run.events.length }, (_, i) => i + 1));
      expect(new Set(run.events.map((e) => e.total)).size, run.stage).toBe(1);
      expect(run.events[run.events.length - 1]!.done, run.stage).toBe(run.events[0]!.total);
      const ms = run.events.map((e) => e.elapsedMs);
      expect(ms).toEqual([...ms].sort((a, b) => a - b));
    }
    const [text, den, load, dec] = r;
    // tiny CLIP: 2 layers, tiny T5: 2 blocks
    expect(text!.events.map((e) => `${e.part}:${e.done}/${e.total}`)).toEqual(['clip:1/4', 'clip:2/4', 't5:3/4', 't5:4/4']);
    // tiny transformer: 1 double + 2 single blocks per step, 3 steps
    expect(den!.events).toHaveLength(9);
    expect(den!.events.map((e) => [e.step, e.steps, e.unit])).toEqual([1, 1, 1, 2, 2, 2, 3, 3, 3].map((s) => [s, 3, 'block']));
    expect(load!.events[0]).toMatchObject({ part: 'vae', unit: 'tensor' });
    // tiny VAE decoder: mid + 4 up levels
    expect(dec!.events.map((e) => `${e.unit}:${e.done}/${e.total}`)).toEqual(['level:1/5', 'level:2/5', 'level:3/5', 'level:4/5', 'level:5/5']);
    expect(res.timings.loadMs).toBeGreaterThan(0);
  });

  it('a resident transformer reports its loading; image-to-image reports the encoder', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL), { transformer: 'resident' });
    const events: ProgressEvent[] = [];
    const rgb = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(128) };
    await pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 2, seed: 1, image: rgb, strength: 1, onProgress: (e) => events.push(e) });
    const order = runs(events).map((x) => `${x.stage}:${x.events[0]!.part}`);
    expect(order).toEqual(['text:clip', 'load:transformer', 'denoise:transformer', 'load:vae', 'decode:vae']);
    const events2: ProgressEvent[] = [];
    await pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 2, seed: 1, image: rgb, strength: 0.5, onProgress: (e) => events2.push(e) });
    expect(runs(events2).map((x) => `${x.stage}:${x.events[0]!.part}`)).toEqual(['load:vae', 'image-encode:vae', 'load:transformer', 'denoise:transformer', 'load:vae', 'decode:vae']);
  });

  it('aborting from a progress callback stops inside a stage with AbortError and leaks nothing', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const before = tf.memory().numTensors;
    for (const at of ['text', 'denoise', 'decode'] as const) {
      const ac = new AbortController();
      const err = await pipe
        .generate({ prompt: `stop in ${at}`, width: 32, height: 32, steps: 3, seed: 1, signal: ac.signal, onProgress: (e) => { if (e.stage === at && e.done === 1) ac.abort(); } })
        .catch((e: unknown) => e);
      expect(err, at).toBeInstanceOf(AbortError);
      expect((err as AbortError).code).toBe('aborted');
      expect(tf.memory().numTensors, at).toBe(before);
    }
  });
});
