/**
 * The transformer reading its weights from a safetensors checkpoint one module at a time (StreamedWeights), in
 * both layouts, against the BFL reference output (fp32, relative L2 <= 1e-5), and all at once (readAllWeights).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose } from '../../../test/harness/compare.ts';
import { fixturePath } from '../../../test/harness/fixtures.ts';
import { Flux } from '../src/transformer/flux.ts';
import { readAllWeights, StreamedWeights } from '../src/transformer/streamed-weights.ts';
import { TransformerWeightsError } from '../src/transformer/weights.ts';
import { TransformerKeyError } from '../src/weights/transformer-keys.ts';
import { openCheckpoint } from '../src/weights/checkpoint.ts';
import { CONFIGS, loadIo, loadParams, toTensors } from './transformer-helpers.ts';

const TOL = 1e-5;

describe.each(CONFIGS)('Flux %s from a checkpoint file', (name) => {
  for (const format of ['bfl', 'diffusers'] as const) {
    it(`streams ${format} weights per module, no tensors left behind`, async () => {
      const params = await loadParams(name);
      const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.${format}.safetensors`));
      const src = new StreamedWeights(ckpt, params);
      expect(src.format).toBe(format);
      const io = await loadIo(name);
      const x = toTensors(io);
      const before = tf.memory().numTensors;
      const flux = new Flux(params, src, { attentionHeadChunk: 2 });
      const out = await flux.forward({ img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance });
      expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} streamed from ${format} file` });
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);

      const resident = Flux.fromTensors(params, await readAllWeights(ckpt));
      const out2 = await resident.forward({ img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance });
      expectClose(out2, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} resident from ${format} file` });
      tf.dispose([out2, ...Object.values(x)]);
      resident.dispose();
      await ckpt.close();
    });
  }

  it('refuses a checkpoint of the other variant before reading any data', async () => {
    const other = name === 'schnell-tiny' ? 'dev-tiny' : 'schnell-tiny';
    const params = await loadParams(name);
    for (const format of ['bfl', 'diffusers'] as const) {
      const ckpt = await openCheckpoint(fixturePath('transformer', `${other}.${format}.safetensors`));
      const err = format === 'bfl' ? TransformerWeightsError : TransformerKeyError;
      expect(() => new StreamedWeights(ckpt, params)).toThrow(err);
      await ckpt.close();
    }
  });
});
