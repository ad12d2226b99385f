/**
 * The pipeline's library behaviour beyond parity (src/pipeline/pipeline.ts): option errors, abort, keepLoaded,
 * verify(), and the defaults of the variant model discovery found.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffusersLocation } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import { TINY as MODEL, writeTinyDevBfl } from './helpers.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-pipeline-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FluxPipeline (library behaviour)', () => {
  it('rejects bad options with one message each', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    await expect(pipe.generate({ prompt: 'x', width: 40, height: 32 })).rejects.toThrow(/width must be a multiple of 16/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 0 })).rejects.toThrow(/steps must be an integer/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, latents: new Float32Array(10) })).rejects.toThrow(/latents .* expected \[1, 16, 4, 4\]/);
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, image: new Uint8Array([1, 2, 3]) })).rejects.toThrow(/neither a PNG nor a JPEG/);
  });

  it('an aborted run stops between steps and leaks no tensors', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 4, seed: 1, signal: ac.signal, onStep: ({ step }) => { if (step === 2) ac.abort(); } }))
      .rejects.toThrow(/aborted after 2 of 4 steps/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keepLoaded gives the same image twice and dispose() frees every tensor', async () => {
    const before = tf.memory().numTensors;
    const pipe = new FluxPipeline(diffusersLocation(MODEL), { keepLoaded: true, transformer: 'resident', textEncoders: 'resident' });
    const a = await pipe.generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    const b = await pipe.generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    expect(Buffer.from(a.images[0]!.rgb).equals(Buffer.from(b.images[0]!.rgb))).toBe(true);
    expect(pipe.promptCache.hits).toBeGreaterThan(0);
    const streamed = await new FluxPipeline(diffusersLocation(MODEL)).generate({ prompt: 'a lighthouse', width: 32, height: 48, steps: 2, seed: 9 });
    expect(Buffer.from(streamed.images[0]!.rgb).equals(Buffer.from(a.images[0]!.rgb))).toBe(true);
    expect(a.timings.stepMs).toHaveLength(2);
    await pipe.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a corrupt component is named by discovery, one that does not match its config by verify(), before anything runs', async () => {
    const m = join(dir, 'corrupt');
    await mkdir(join(m, 'vae'), { recursive: true });
    for (const e of await readdir(MODEL)) if (e !== 'vae') await symlink(join(MODEL, e), join(m, e));
    const config = JSON.parse(await readFile(join(MODEL, 'vae', 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(m, 'vae', 'config.json'), JSON.stringify(config));
    await writeFile(join(m, 'vae', 'diffusion_pytorch_model.safetensors'), 'not a safetensors file at all');
    expect(() => diffusersLocation(m)).toThrow(/vae.*diffusion_pytorch_model\.safetensors/);
    await symlink(join(MODEL, 'vae', 'diffusion_pytorch_model.safetensors'), join(m, 'vae', 'model.safetensors'));
    await rm(join(m, 'vae', 'diffusion_pytorch_model.safetensors'));
    await writeFile(join(m, 'vae', 'config.json'), JSON.stringify({ ...config, layers_per_block: 1 }));
    const pipe = new FluxPipeline(diffusersLocation(m));
    await expect(pipe.verify()).rejects.toThrow(/vae.*does not match the autoencoder: unexpected 64 key\(s\): decoder\.up_blocks\.0\.resnets\.2\./);
  });
});

describe('defaults of the variant found from the headers', () => {
  it('a BFL dev model.safetensors generates with dev defaults: 50 steps, T5 length 512, shifted schedule', async () => {
    const d = join(dir, 'bfl-dev');
    await mkdir(d, { recursive: true });
    await writeTinyDevBfl(join(d, 'model.safetensors'), true);
    const pipe = FluxPipeline.load({ model: join(d, 'model.safetensors'), textEncoders: MODEL, vae: join(MODEL, 'vae'), env: {} });
    expect(pipe.variant).toBe('dev');
    expect(pipe.defaults).toMatchObject({ num_inference_steps: 50, max_sequence_length: 512 });
    expect(pipe.scheduler.use_dynamic_shifting).toBe(true);
    await pipe.verify();
    const before = tf.memory().numTensors;
    const res = await pipe.generate({ prompt: 'a red cube', width: 16, height: 16, seed: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(res).toMatchObject({ variant: 'dev', steps: 50, stepsRun: 50, maxSequenceLength: 512, guidance: 3.5 });
    expect(res.timings.stepMs).toHaveLength(50);
    expect(res.images[0]!.metadata).toMatchObject({ variant: 'dev', steps: 50, max_sequence_length: 512 });
  });
});
