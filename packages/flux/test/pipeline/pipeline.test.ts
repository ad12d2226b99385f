/**
 * The pipeline's library behaviour beyond parity (src/pipeline/pipeline.ts): option errors, abort, keepLoaded,
 * verify(), and the defaults of the variant model discovery found.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError } from '@flux-ts/core';
import { FakeHub, type FakeFile } from '../../../../test/harness/fake-hub.ts';
import { REPO_ROOT } from '../../../../test/harness/fixtures.ts';
import * as api from '../../src/index.ts';
import { diffusersLocation } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import type { ProgressEvent } from '../../src/pipeline/progress.ts';
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

  it('rejects unknown options (a misspelt key is an error, not ignored)', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    await expect(pipe.generate({ prompt: 'x', stpes: 2 } as never)).rejects.toThrow(/unknown generate option: stpes \(did you mean steps\?\)/);
    await expect(pipe.generate({ prompt: 'x', preview: { onPreview: () => {}, evry: 2 } } as never)).rejects.toThrow(/unknown preview option: evry/);
    expect(() => new FluxPipeline(diffusersLocation(MODEL), { keepLoad: true } as never)).toThrow(/unknown FluxPipeline option: keepLoad \(did you mean keepLoaded\?\)/);
    expect(() => FluxPipeline.load(MODEL, { downlaod: true } as never)).toThrow(/unknown FluxPipeline.load option: downlaod/);
  });

  it('an aborted run stops between steps with AbortError, the same type as anywhere else, and leaks no tensors', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    const err = await pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 4, seed: 1, signal: ac.signal, onStep: ({ step }) => { if (step === 2) ac.abort(); } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as Error).message).toMatch(/aborted after 2 of 4 steps/);
    const ac2 = new AbortController();
    ac2.abort();
    await expect(pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 4, seed: 1, signal: ac2.signal })).rejects.toBeInstanceOf(AbortError);
    expect(api.AbortError).toBe(AbortError);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('onStep: returned latents replace the state (a different image); returning nothing or the same latents changes nothing', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const opts = { prompt: 'a tree', width: 32, height: 32, steps: 3, seed: 8 };
    const before = tf.memory().numTensors;
    const plain = await pipe.generate(opts);
    const shapes: number[][] = [];
    const untouched = await pipe.generate({ ...opts, onStep: (s) => { shapes.push(s.latents.shape); } });
    const same = await pipe.generate({ ...opts, onStep: (s) => s.latents });
    const x0s: number[] = [];
    const changed = await pipe.generate({
      ...opts,
      onStep: (s) => {
        const x0 = s.denoised(); // caller-owned
        x0s.push(x0.shape[1]!);
        x0.dispose();
        return s.step === 1 ? tf.mul(s.latents, 0.5) : undefined;
      },
    });
    expect(shapes).toEqual([[1, 4, 64], [1, 4, 64], [1, 4, 64]]);
    expect(x0s).toEqual([4, 4, 4]);
    expect(Buffer.from(untouched.images[0]!.rgb).equals(Buffer.from(plain.images[0]!.rgb))).toBe(true);
    expect(Buffer.from(same.images[0]!.rgb).equals(Buffer.from(plain.images[0]!.rgb))).toBe(true);
    expect(Buffer.from(changed.images[0]!.rgb).equals(Buffer.from(plain.images[0]!.rgb))).toBe(false);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('one image of a batch made again alone equals that image of the batch; its metadata records batch and index', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const batch = await pipe.generate({ prompt: 'two cats', width: 32, height: 48, steps: 2, seed: 21, numImages: 3 });
    const alone = await pipe.generate({ prompt: 'two cats', width: 32, height: 48, steps: 2, seed: 21, numImages: 3, batchIndex: 2 });
    expect(alone.images).toHaveLength(1);
    expect(alone.images[0]!.metadata).toMatchObject({ num_images: 3, index: 2, seed: 21 });
    const a = alone.images[0]!.rgb;
    const b = batch.images[2]!.rgb;
    let off = 0;
    for (let i = 0; i < a.length; i++) off = Math.max(off, Math.abs(a[i]! - b[i]!));
    expect(off).toBeLessThanOrEqual(1); // batched matmuls may round differently by one step
    expect(Buffer.from(a).equals(Buffer.from(batch.images[0]!.rgb))).toBe(false);
    await expect(pipe.generate({ prompt: 'x', numImages: 2, batchIndex: 2 })).rejects.toThrow(/batchIndex must be an integer from 0 to 1/);
  });

  it('latents: the metadata records the latents and their sha256, and no seed when the seed drew nothing', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const latents = new Float32Array(16 * 4 * 4).map((_, i) => Math.sin(i));
    const r = await pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 1, seed: 5, latents, latentsName: 'noise.safetensors' });
    expect(r.seedUsed).toBe(false);
    expect(r.images[0]!.metadata.seed).toBeUndefined();
    expect(r.images[0]!.metadata).toMatchObject({ latents: 'noise.safetensors', latents_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('sizes: any multiple of 16 up to 2048 (a 1344x768 image on the tiny model); the estimate refuses what cannot fit', async () => {
    const pipe = new FluxPipeline(diffusersLocation(MODEL));
    const r = await pipe.generate({ prompt: 'a wide landscape', width: 1344, height: 768, steps: 1, seed: 3 });
    expect([r.images[0]!.width, r.images[0]!.height]).toEqual([1344, 768]);
    await expect(pipe.generate({ prompt: 'x', width: 1350, height: 768 })).rejects.toThrow(/width must be a multiple of 16 pixels, got 1350 \(nearest: 1344 or 1360\)/);
    await expect(pipe.generate({ prompt: 'x', width: 2064, height: 768 })).rejects.toThrow(/width must be from 16 to 2048 pixels/);
    const est = await pipe.memoryEstimate({ width: 1344, height: 768 });
    expect(est.fits).toBe(true);
    const full = api.estimateGenerationMemory(api.FLUX_SCHNELL, { width: 2048, height: 2048, batch: 1, textTokens: 256, residency: 'streamed', backend: 'wasm' });
    expect(full.fits).toBe(false);
    expect(full.summary).toMatch(/^2048x2048 needs about \d+\.\d GiB in the transformer stage \(streamed weights\); the wasm backend holds at most 3\.8 GiB/);
    expect(api.estimateGenerationMemory(api.FLUX_SCHNELL, { width: 1024, height: 1024, batch: 1, textTokens: 256, residency: 'streamed', backend: 'wasm' }).fits).toBe(true);
    expect(api.estimateGenerationMemory(api.FLUX_SCHNELL, { width: 2048, height: 2048, batch: 1, textTokens: 256, residency: 'streamed', backend: 'tensorflow', totalMemBytes: 24 * 2 ** 30 }).fits).toBe(true);
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

describe('loading', () => {
  it('FluxPipeline.load(repo, { download: true }) fetches a repo missing from the cache, reports bytes, then generates', async () => {
    const files: FakeFile[] = [];
    const walk = async (d: string) => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else files.push({ path: relative(MODEL, p), content: await readFile(p), lfs: p.endsWith('.safetensors') });
      }
    };
    await walk(MODEL);
    const hub = await new FakeHub({ repo: 'test-org/tiny-flux', files }).start();
    try {
      const cacheDir = join(dir, 'hf-cache');
      const hubOpts = { endpoint: hub.url, cacheDir, token: null };
      const env = { HF_HUB_CACHE: cacheDir };
      expect(() => FluxPipeline.load({ model: 'test-org/tiny-flux', env })).toThrow(/not in the Hugging Face cache/);
      const events: ProgressEvent[] = [];
      const pipe = await FluxPipeline.load({ model: 'test-org/tiny-flux', env }, { download: true, hub: hubOpts, onProgress: (e) => events.push(e) });
      expect(pipe.location.name).toBe('test-org/tiny-flux');
      expect(events.length).toBeGreaterThan(0);
      expect(events.every((e) => e.stage === 'download' && e.unit === 'byte')).toBe(true);
      const done = events.map((e) => e.done);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(done[done.length - 1]).toBe(events[0]!.total);
      const r = await pipe.generate({ prompt: 'x', width: 32, height: 32, steps: 1, seed: 1 });
      expect(r.images).toHaveLength(1);
      // present now: a second load reads the cache, without the hub
      await hub.close();
      const again = await FluxPipeline.load({ model: 'test-org/tiny-flux', env }, { download: true, hub: hubOpts });
      expect(again.location.transformer.path).toBe(pipe.location.transformer.path);
    } finally {
      await hub.close().catch(() => undefined);
    }
  });

  it('the backend initialises itself on first use (no initBackend call), honouring FLUX_BACKEND', () => {
    const script = [
      "const { FluxPipeline, currentBackend, tf } = await import('./packages/flux/src/index.ts');",
      `const pipe = FluxPipeline.load(${JSON.stringify(MODEL)});`,
      "const r = await pipe.generate({ prompt: 'x', width: 16, height: 16, steps: 1, seed: 1 });",
      "process.stdout.write(JSON.stringify({ backend: tf.getBackend(), chosen: currentBackend()?.name, images: r.images.length }));",
    ].join('\n');
    const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, FLUX_BACKEND: 'wasm' } });
    expect(res.status, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ backend: 'wasm', chosen: 'wasm', images: 1 });
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
