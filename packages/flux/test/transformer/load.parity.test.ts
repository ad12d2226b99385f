/**
 * The transformer reading its weights from a safetensors checkpoint one module at a time (streamed), in both
 * layouts, against the BFL reference output (fp32, relative L2 <= 1e-5), and all at once (resident).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { Flux } from '../../src/transformer/flux.ts';
import { TransformerWeightsError } from '../../src/transformer/keys.ts';
import { loadTransformer, openTransformerWeights } from '../../src/transformer/load.ts';
import { uploadCopies } from '../../src/runtime/backend.ts';
import { SafetensorsError } from '../../src/weights/safetensors.ts';
import { openCheckpoint, type Checkpoint, type TensorReader } from '../../src/weights/checkpoint.ts';

/** A checkpoint that logs every raw read (and can fail one), so the read order can be checked against the modules. */
class LoggingReader implements TensorReader {
  private readonly inner: Checkpoint;
  readonly log: string[];
  private readonly failOn?: string;
  constructor(
    inner: Checkpoint,
    log: string[],
    failOn?: string,
  ) {
    this.inner = inner;
    this.log = log;
    this.failOn = failOn;
  }
  get path() { return this.inner.path; }
  get files() { return this.inner.files; }
  get tensors() { return this.inner.tensors; }
  readRange(name: string, begin: number, end: number) { return this.inner.readRange(name, begin, end); }
  async readBytes(name: string) {
    this.log.push(`read ${name}`);
    if (name === this.failOn) throw new SafetensorsError(this.inner.path, 'read failed (EIO)', { tensor: name, code: 'SAFETENSORS_IO' });
    return this.inner.readBytes(name);
  }
}
import { CONFIGS, loadIo, loadParams, toTensors } from './helpers.ts';

const TOL = 1e-5;

describe.each(CONFIGS)('Flux %s from a checkpoint file', (name) => {
  for (const format of ['bfl', 'diffusers'] as const) {
    it(`streams ${format} weights per module, no tensors left behind`, async () => {
      const params = await loadParams(name);
      const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.${format}.safetensors`));
      const src = openTransformerWeights(ckpt, params, { residency: 'streamed' });
      expect(src.layout.format).toBe(`${format}-transformer`);
      const io = await loadIo(name);
      const x = toTensors(io);
      const before = tf.memory().numTensors;
      const flux = new Flux(params, src, { attentionHeadChunk: 2 });
      const out = await flux.forward({ img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance });
      expectClose(out, io.out_bfl!.data as Float32Array, { relL2: TOL, label: `${name} streamed from ${format} file` });
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);

      const resident = await loadTransformer(ckpt, params, { residency: 'resident' });
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
      expect(() => openTransformerWeights(ckpt, params)).toThrow(TransformerWeightsError);
      await ckpt.close();
    }
  });
});

describe('streamed weights: prefetch', () => {
  const name = 'schnell-tiny';

  it('reads the next module while the current one runs, each tensor once per step; same output as no prefetch', async () => {
    const params = await loadParams(name);
    const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.bfl.safetensors`));
    const io = await loadIo(name);
    const x = toTensors(io);
    const inputs = { img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance };
    const outs: Float32Array[] = [];
    for (const prefetch of [true, false]) {
      const log: string[] = [];
      const flux = new Flux(params, openTransformerWeights(new LoggingReader(ckpt, log), params, { residency: 'streamed', prefetch }), {
        onModule: (prefix, phase) => log.push(`${phase} ${prefix}`),
      });
      const before = tf.memory().numTensors;
      const out = await flux.forward(inputs);
      outs.push(out.dataSync() as Float32Array);
      out.dispose();
      expect(tf.memory().numTensors).toBe(before);
      const reads = log.filter((l) => l.startsWith('read '));
      // Every tensor read exactly once, except that the wrap-around prefetch of the next step's img_in reads it again.
      const firstStep = reads.slice(0, ckpt.tensors.size);
      expect(new Set(firstStep).size).toBe(ckpt.tensors.size);
      expect(reads.length).toBe(ckpt.tensors.size + (prefetch ? 2 : 0));
      const firstRead = (prefix: string) => log.findIndex((l) => l.startsWith(`read ${prefix}`));
      const ran = (prefix: string) => log.indexOf(`ran ${prefix}`);
      expect(params.depth).toBeGreaterThanOrEqual(2);
      if (prefetch) {
        expect(firstRead('double_blocks.1.')).toBeLessThan(ran('double_blocks.0.'));
        expect(firstRead('single_blocks.0.')).toBeLessThan(ran(`double_blocks.${params.depth - 1}.`));
        expect(firstRead('final_layer.')).toBeLessThan(ran(`single_blocks.${params.depthSingleBlocks - 1}.`));
      } else {
        expect(firstRead('double_blocks.1.')).toBeGreaterThan(ran('double_blocks.0.'));
      }
    }
    expect(Array.from(outs[0]!)).toEqual(Array.from(outs[1]!));
    expectClose(tf.tensor(outs[0]!), io.out_bfl!.data as Float32Array, { relL2: TOL, label: 'streamed with prefetch' });
    tf.dispose(Object.values(x));
    await ckpt.close();
  });

  it('a failed read of a prefetched module surfaces from forward() as its own error, nothing left behind', async () => {
    const params = await loadParams(name);
    const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.diffusers.safetensors`));
    const io = await loadIo(name);
    const x = toTensors(io);
    const log: string[] = [];
    const bad = 'transformer_blocks.1.attn.to_k.weight';
    const flux = new Flux(params, openTransformerWeights(new LoggingReader(ckpt, log, bad), params, { residency: 'streamed' }), {
      onModule: (p, phase) => log.push(`${phase} ${p}`),
    });
    const before = tf.memory().numTensors;
    const err = await flux.forward({ img: x.img!, img_ids: x.img_ids!, txt: x.txt!, txt_ids: x.txt_ids!, timesteps: x.timesteps!, y: x.y!, guidance: x.guidance })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).message).toMatch(/to_k\.weight.*read failed/);
    expect(log.indexOf(`read ${bad}`)).toBeLessThan(log.indexOf('ran double_blocks.0.')); // it was a prefetch
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(x));
    await ckpt.close();
  });
});

describe('uploadCopies', () => {
  // tfjs-node shares the array when it is 64-byte aligned and copies it otherwise (TF_NewTensor), so only wasm
  // (always a copy) and cpu (always the array itself) have a fixed answer to check.
  it.skipIf(tf.getBackend() === 'tensorflow')('is true exactly where overwriting an uploaded array leaves the tensor as it was', async () => {
    const buf = new Float32Array(1 << 20).fill(1);
    const t = tf.tensor(buf.subarray(0, 1 << 19), [1 << 19]);
    buf.fill(2);
    expect((await t.data())[0]).toBe(uploadCopies() ? 1 : 2);
    expect(uploadCopies()).toBe(tf.getBackend() === 'wasm');
    t.dispose();
  });
});
