/**
 * The bf16 precision (runtime/bf16.ts) against the float32 reference, judged by the reference's own bf16 error:
 * test/reference/gen_bf16.py runs the same tiny models in torch.bfloat16 (diffusers / transformers) and stores
 * their outputs; for every module, relL2(ours in bf16, fp32 reference) must be at most 1.5x relL2(torch bf16, fp32
 * reference), both computed here. For the pipeline: every case of the seed-for-seed test, our bf16 image's PSNR
 * against the fp32 reference image is at least diffusers' own bf16 image's PSNR minus 1 dB.
 *
 * Native tensorflow backend only (bf16 lives in TensorFlow, not in tfjs); elsewhere the suite says why it skips.
 * A guard makes the tests fail if bf16 silently ran in float32: the weights' TensorFlow handles must be bfloat16,
 * and the output must differ from float32's by more than float32 rounding.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareArrays } from '../../../../test/harness/compare.ts';
import { fixturePath, loadFixture, loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { autoEncoderParamsFromDiffusers } from '../../src/autoencoder/config.ts';
import { loadAutoEncoder } from '../../src/autoencoder/load.ts';
import { diffusersLocation } from '../../src/pipeline/model-location.ts';
import { FluxPipeline } from '../../src/pipeline/pipeline.ts';
import { bf16Available, isBf16, nativeDtype, nativeHandleCount, resolvePrecision, TF_DTYPE } from '../../src/runtime/bf16.ts';
import { loadClipTextModel, loadT5EncoderModel } from '../../src/text-encoders/load.ts';
import { DoubleStreamBlock } from '../../src/transformer/double-stream-block.ts';
import { loadTransformer } from '../../src/transformer/load.ts';
import { SingleStreamBlock } from '../../src/transformer/single-stream-block.ts';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { pipelineCases } from '../pipeline/helpers.ts';
import { CONFIGS, loadIo, loadParams, ropeFromBfl, toTensors, type Fixture } from '../transformer/helpers.ts';

/** How much worse than torch's own bf16 our bf16 may be (the yardstick). */
const FACTOR = 1.5;
const native = bf16Available();
const d = native ? describe : describe.skip;
if (!native) console.log(`bf16 parity skipped: bf16 runs in TensorFlow, the backend here is ${tf.getBackend()} (FLUX_BACKEND=tensorflow runs it)`);

const relL2 = (a: ArrayLike<number>, e: ArrayLike<number>) => compareArrays(a, e).relL2;

/** Ours vs the fp32 reference within FACTOR x torch-bf16 vs the fp32 reference; returns both for the log. */
function expectWithinTorch(label: string, ours: ArrayLike<number>, torchBf16: ArrayLike<number>, fp32: ArrayLike<number>) {
  const errOurs = relL2(ours, fp32);
  const errTorch = relL2(torchBf16, fp32);
  console.log(`bf16 ${label}: ours relL2 ${errOurs.toExponential(2)}, torch bf16 ${errTorch.toExponential(2)} (limit ${FACTOR}x)`);
  expect(errTorch, `${label}: the torch bf16 fixture`).toBeGreaterThan(1e-4); // a bf16 run, not a float32 one
  expect(errOurs, `${label}: ours vs fp32 within ${FACTOR}x torch's own bf16 error`).toBeLessThanOrEqual(FACTOR * errTorch);
  return { errOurs, errTorch };
}

/** Ours really ran bf16: it differs from float32 by more than float32 summation order would (~1e-6). */
function expectNotFloat32(label: string, ours: ArrayLike<number>, fp32: ArrayLike<number>) {
  expect(relL2(ours, fp32), `${label}: bf16 output identical to fp32's (fell back to float32?)`).toBeGreaterThan(1e-4);
}

d('bf16 precision', () => {
  let bf16: Fixture;
  beforeAll(async () => {
    bf16 = (await loadFixture('bf16', 'transformer.safetensors')) as Fixture;
  });

  it('resolves: auto is bf16 on the native backend, fp32 stays fp32', () => {
    expect(resolvePrecision('auto')).toBe('bf16');
    expect(resolvePrecision('fp32')).toBe('fp32');
  });

  describe.each(CONFIGS)('transformer %s', (name) => {
    it('whole model (resident and streamed) within 1.5x torch bf16 error; weights are bf16 TensorFlow handles; nothing leaks', async () => {
      const params = await loadParams(name);
      const io = await loadIo(name);
      const x = toTensors(io);
      const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.diffusers.safetensors`));
      try {
        tf.tidy(() => Object.values(x).map((t) => tf.add(t, 0))); // tfjs-node uploads a tensor on its first use: do it now
        const handles = nativeHandleCount();
        const tensors = tf.memory().numTensors;
        for (const residency of ['resident', 'streamed'] as const) {
          const model = await loadTransformer(ckpt, params, { residency, precision: 'bf16' });
          if (residency === 'resident') {
            const w = await model.weights.get('double_blocks.0.');
            const qkv = w['img_attn.qkv.weight']!;
            expect(isBf16(qkv)).toBe(true);
            expect(nativeDtype(qkv)).toBe(TF_DTYPE.BFLOAT16); // the guard: a bf16 TensorFlow tensor, not float32
            expect(qkv.shape).toEqual([3 * params.hiddenSize, params.hiddenSize]); // the checkpoint's [out, in], never transposed
            expect(isBf16(w['img_attn.qkv.bias'])).toBe(false); // biases stay float32
          }
          const out = await model.forward({
            img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!,
            ...(params.guidanceEmbed ? { guidance: x.guidance! } : {}),
          });
          const ours = out.dataSync();
          expectNotFloat32(`${name} ${residency}`, ours, io.out_diffusers!.data as Float32Array);
          expectWithinTorch(`${name} transformer (${residency})`, ours, bf16[`${name}.out`]!.data as Float32Array, io.out_diffusers!.data as Float32Array);
          out.dispose();
          model.dispose();
        }
        expect(tf.memory().numTensors).toBe(tensors);
        expect(nativeHandleCount()).toBe(handles); // no bf16 handle outlives its model
      } finally {
        tf.dispose(Object.values(x));
        await ckpt.close();
      }
    });

    it('double block 0 and single block 0 within 1.5x torch bf16 error', async () => {
      const params = await loadParams(name);
      const io = await loadIo(name);
      const x = toTensors(io);
      const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.diffusers.safetensors`));
      const model = await loadTransformer(ckpt, params, { residency: 'streamed', precision: 'bf16' });
      const dims = { hidden_size: params.hiddenSize, num_heads: params.numHeads, mlp_ratio: params.mlpRatio, qkv_bias: params.qkvBias };
      const pe = ropeFromBfl(x.pe!);
      try {
        const dw = await model.weights.get('double_blocks.0.');
        const [img, txt] = new DoubleStreamBlock(dims, dw).forward(x['double0.img']!, x['double0.txt']!, x.vec!, pe);
        expectWithinTorch(`${name} double block img`, img.dataSync(), bf16[`${name}.double0.out_img`]!.data as Float32Array, io['double0.out_img']!.data as Float32Array);
        expectWithinTorch(`${name} double block txt`, txt.dataSync(), bf16[`${name}.double0.out_txt`]!.data as Float32Array, io['double0.out_txt']!.data as Float32Array);
        tf.dispose([img, txt]);
        model.weights.release('double_blocks.0.', dw);
        const sw = await model.weights.get('single_blocks.0.');
        const out = new SingleStreamBlock(dims, sw).forward(x['single0.x']!, x.vec!, pe);
        expectWithinTorch(`${name} single block`, out.dataSync(), bf16[`${name}.single0.out`]!.data as Float32Array, io['single0.out']!.data as Float32Array);
        out.dispose();
        model.weights.release('single_blocks.0.', sw);
      } finally {
        tf.dispose([pe.cos, pe.sin, ...Object.values(x)]);
        model.dispose();
        await ckpt.close();
      }
    });
  });

  describe('text encoders', () => {
    const rows = (t: { shape: number[]; data: ArrayLike<number> }) =>
      Array.from({ length: t.shape[0]! }, (_, b) => Array.from(t.data).slice(b * t.shape[1]!, (b + 1) * t.shape[1]!));

    it('CLIP-L shape (clip): last_hidden_state and pooler_output within 1.5x torch bf16 error', async () => {
      const ref = await loadFixture('text-encoders', 'clip.safetensors');
      const t = await loadFixture('bf16', 'text-encoders.safetensors');
      const enc = await loadClipTextModel(fixturePath('text-encoders', 'clip'), { precision: 'bf16' });
      const { lastHiddenState, pooledOutput } = await enc.model.forward(rows(ref.input_ids));
      expectNotFloat32('clip', lastHiddenState.dataSync(), ref.last_hidden_state.data as Float32Array);
      expectWithinTorch('clip last_hidden_state', lastHiddenState.dataSync(), t['clip.last_hidden_state']!.data as Float32Array, ref.last_hidden_state.data as Float32Array);
      expectWithinTorch('clip pooler_output', pooledOutput.dataSync(), t['clip.pooler_output']!.data as Float32Array, ref.pooler_output.data as Float32Array);
      tf.dispose([lastHiddenState, pooledOutput]);
      await enc.close();
    });

    it('T5 (sharded): last_hidden_state within 1.5x torch bf16 error (bf16 keeps float32 range: no overflow)', async () => {
      const ref = await loadFixture('text-encoders', 't5.safetensors');
      const t = await loadFixture('bf16', 'text-encoders.safetensors');
      const enc = await loadT5EncoderModel(fixturePath('text-encoders', 't5'), { precision: 'bf16' });
      const out = await enc.model.forward(rows(ref.input_ids));
      const ours = out.dataSync();
      expect(ours.every(Number.isFinite)).toBe(true);
      expectNotFloat32('t5', ours, ref.last_hidden_state.data as Float32Array);
      expectWithinTorch('t5 last_hidden_state', ours, t['t5.last_hidden_state']!.data as Float32Array, ref.last_hidden_state.data as Float32Array);
      out.dispose();
      await enc.close();
    });
  });

  it('VAE decode and encode within 1.5x torch bf16 error; conv weights are bf16', async () => {
    const dec = await loadFixture('vae', 'decode.safetensors');
    const enc = await loadFixture('vae', 'encode.safetensors');
    const t = await loadFixture('bf16', 'vae.safetensors');
    const vaeParams = autoEncoderParamsFromDiffusers(await loadJsonFixture('vae', 'vae-tiny.config.json'));
    const { ae } = await loadAutoEncoder(fixturePath('vae', 'vae-tiny.diffusers.safetensors'), { params: vaeParams, precision: 'bf16' });
    const { params } = ae;
    expect(isBf16(ae.decoder.conv_in.weight)).toBe(true);
    const z = tf.tensor(dec.z.data as Float32Array, dec.z.shape);
    ae.decode(z as tf.Tensor4D).dispose(); // the first use uploads what tfjs-node holds lazily (float32 biases, z)
    const handles = nativeHandleCount();
    const img = ae.decode(z as tf.Tensor4D);
    expectWithinTorch('vae decode', img.dataSync(), t['vae.decode.image']!.data as Float32Array, dec.image.data as Float32Array);
    const x = tf.tensor(enc.x.data as Float32Array, enc.x.shape);
    const zm = ae.encode(x as tf.Tensor4D, { mode: 'mean' });
    // torch's latent_dist.mean, scaled as the sampler sees it: scale (mean - shift)
    const torchZ = Float32Array.from(t['vae.encode.mean']!.data as Float32Array, (m) => params.scaleFactor * (m - params.shiftFactor));
    expectWithinTorch('vae encode (scaled mean)', zm.dataSync(), torchZ, enc.z_mean.data as Float32Array);
    tf.dispose([img, zm]);
    ae.encode(x as tf.Tensor4D, { mode: 'mean' }).dispose();
    const afterEncode = nativeHandleCount();
    ae.encode(x as tf.Tensor4D, { mode: 'mean' }).dispose();
    ae.decode(z as tf.Tensor4D).dispose();
    expect(nativeHandleCount()).toBe(afterEncode); // repeated decodes and encodes leave no handle behind
    expect(afterEncode).toBeGreaterThanOrEqual(handles);
    tf.dispose([z, x]);
    ae.dispose();
  });
});

function psnr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let se = 0;
  for (let i = 0; i < b.length; i++) se += (a[i]! - b[i]!) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255 * b.length) / se);
}

d('bf16 pipeline, every seed-for-seed case: PSNR against the fp32 image >= diffusers bf16 PSNR - 1 dB', async () => {
  const MODEL = fixturePath('pipeline', 'tiny-flux');
  const cases = await pipelineCases();
  const inputPng = await readFile(fixturePath('pipeline', 'input.png'));
  const t = native ? await loadFixture('bf16', 'pipeline.safetensors') : {};
  const devRoot = await mkdtemp(join(tmpdir(), 'flux-bf16-'));
  const { symlink, readdir, mkdir } = await import('node:fs/promises');
  const dev = join(devRoot, 'dev');
  await mkdir(dev);
  for (const e of await readdir(MODEL)) {
    await symlink(e === 'transformer' || e === 'scheduler' ? fixturePath('pipeline', 'tiny-flux-dev', e) : join(MODEL, e), join(dev, e));
  }
  const schnell = new FluxPipeline(diffusersLocation(MODEL), { precision: 'bf16', keepLoaded: true });
  const devPipe = FluxPipeline.load({ model: dev, env: {} }, { precision: 'bf16', keepLoaded: true });
  afterAll(async () => {
    await schnell.dispose();
    await devPipe.dispose();
    await rm(devRoot, { recursive: true, force: true });
  });

  it('fp8 resident mode (e4m3 weights, bf16 compute): weights are fp8 TensorFlow tensors; PSNR against fp32 reported', async () => {
    const fp8 = new FluxPipeline(diffusersLocation(MODEL), { precision: 'bf16', transformer: 'fp8' });
    const results: string[] = [];
    for (const c of cases.filter((x) => x.kind === 'txt2img' && !x.name.startsWith('dev'))) {
      const ref = await loadFixture('pipeline', `${c.name}.safetensors`);
      const r = await fp8.generate({ prompt: c.prompt, width: c.width, height: c.height, steps: c.steps, seed: c.seed, numImages: c.num_images, maxSequenceLength: c.max_sequence_length });
      const ours = new Uint8Array(r.images.flatMap((im) => Array.from(im.rgb)));
      const p = psnr(ours, ref.pixels.data as ArrayLike<number>);
      expect(Number.isFinite(p)).toBe(true);
      expect(p).toBeGreaterThan(20); // a picture of the same thing, not noise
      results.push(`${c.name} ${p.toFixed(2)} dB`);
    }
    console.log(`fp8 resident (e4m3, no scales) pipeline PSNR vs fp32: ${results.join(', ')}`);
    const ckpt = await openCheckpoint(join(MODEL, 'transformer', 'diffusion_pytorch_model.safetensors'));
    const m = await loadTransformer(ckpt, schnell.location.transformer.params, { residency: 'fp8', precision: 'bf16' });
    const w = await m.weights.get('single_blocks.0.');
    expect(nativeDtype(w['linear1.weight']!)).toBe(TF_DTYPE.FLOAT8_E4M3FN);
    expect(nativeDtype(w['linear1.bias']!)).toBe(TF_DTYPE.FLOAT);
    m.dispose();
    await ckpt.close();
  });

  for (const c of cases) {
    it(`${c.name}`, async () => {
      const ref = await loadFixture('pipeline', `${c.name}.safetensors`);
      const pipe = c.name.startsWith('dev') ? devPipe : schnell;
      const r = await pipe.generate({
        prompt: c.prompt, width: c.width, height: c.height, steps: c.steps, seed: c.seed, numImages: c.num_images,
        maxSequenceLength: c.max_sequence_length,
        ...(c.kind === 'img2img' ? { image: inputPng, strength: c.strength } : {}),
        ...(c.guidance !== undefined ? { guidance: c.guidance } : {}),
      });
      expect(r.precision).toBe('bf16');
      expect(r.images[0]!.metadata.precision).toBe('bf16');
      const ours = new Uint8Array(r.images.reduce((n, im) => n + im.rgb.length, 0));
      let o = 0;
      for (const im of r.images) {
        ours.set(im.rgb, o);
        o += im.rgb.length;
      }
      const expected = ref.pixels.data as ArrayLike<number>;
      const mine = psnr(ours, expected);
      const theirs = (t[`${c.name}.psnr`]!.data as Float64Array)[0]!;
      console.log(`bf16 pipeline ${c.name}: PSNR vs fp32 ours ${mine.toFixed(2)} dB, diffusers bf16 ${theirs.toFixed(2)} dB`);
      expect(mine).toBeGreaterThanOrEqual(theirs - 1);
    });
  }
});
