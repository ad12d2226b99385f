/**
 * The README's stage-by-stage example (Library: one stage at a time), run as written on the tiny model: the packed
 * latents, getSchedule and TorchGenerator from '@flux-ts/flux', the stages by hand, and the same pixels as
 * generate().
 */
import { describe, expect, it } from 'vitest';
import { FluxPipeline, TorchGenerator, getSchedule, imageSeqLen, latentShape, packLatents, tf } from '../../src/index.ts';
import { TINY } from './helpers.ts';

describe('README: stage by stage', () => {
  it('gives the pixels generate() gives, and leaks no tensors', async () => {
    const before = tf.memory().numTensors;
    // --- the README example (a 64x64 image; 512x512 with the real model) ---
    const pipe = FluxPipeline.load(TINY);
    const [width, height, seed, steps] = [64, 64, 42, 4];
    const embeddings = await pipe.encodePrompt('a photo of a cat');               // T5 + CLIP, host arrays
    const noise = new TorchGenerator(seed).randn(latentShape(width, height));   // [1, 16, H/8, W/8], as torch draws it
    const latents = tf.tidy(() => packLatents(tf.tensor(noise, latentShape(width, height))));  // -> [1, L, 64]
    const sigmas = getSchedule(steps, imageSeqLen(width, height), pipe.scheduler);
    const final = await pipe.denoiseLatents({
      embeddings, latents, width, height, sigmas,
      onStep: ({ step, sigma, denoised }) => {
        const x0 = denoised();                                                  // the x0 estimate: yours to dispose
        const mean = tf.tidy(() => tf.mean(x0).dataSync()[0]!);
        console.log(`step ${step}: sigma ${sigma.toFixed(3)}, x0 mean ${mean.toFixed(4)}`);
        x0.dispose();
      },
    });
    const [image] = await pipe.decodeLatents(final, width, height);            // RGB bytes
    tf.dispose([latents, final]);
    // --- end of the example ---
    const whole = await pipe.generate({ prompt: 'a photo of a cat', width, height, seed, steps });
    expect(Buffer.from(image!.data).equals(Buffer.from(whole.images[0]!.rgb))).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });
});
