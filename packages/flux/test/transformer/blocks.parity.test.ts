/**
 * Per-module parity against tensors hooked out of BFL's Flux while it ran the whole-model fixture
 * (test/reference/gen_transformer.py), so a whole-model failure points at a module. fp32: relative L2 <= 1e-5.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../../test/harness/compare.ts';
import { headDim } from '../../src/transformer/config.ts';
import { DoubleStreamBlock } from '../../src/transformer/double-stream-block.ts';
import { EmbedND } from '../../src/transformer/embed-nd.ts';
import { LastLayer } from '../../src/transformer/last-layer.ts';
import { SingleStreamBlock } from '../../src/transformer/single-stream-block.ts';
import { timestepEmbedding } from '../../src/math.ts';
import { scope } from '../../src/weights/spec.ts';
import { CONFIGS, loadIo, loadParams, loadWeights, ropeFromBfl, ropeToBfl, toTensors } from './helpers.ts';

const TOL = 1e-5;

beforeAll(async () => {
  await tf.ready();
});

describe.each(CONFIGS)('transformer modules (%s)', (name) => {
  let x: Record<string, tf.Tensor>;
  let w: Record<string, tf.Tensor>;
  let dims: { hidden_size: number; num_heads: number; mlp_ratio: number; qkv_bias: boolean };
  let p: Awaited<ReturnType<typeof loadParams>>;

  beforeAll(async () => {
    p = await loadParams(name);
    dims = { hidden_size: p.hiddenSize, num_heads: p.numHeads, mlp_ratio: p.mlpRatio, qkv_bias: p.qkvBias };
    x = toTensors(await loadIo(name));
    w = await loadWeights(name, 'bfl');
    return () => {
      tf.dispose(Object.values(x));
      tf.dispose(Object.values(w));
    };
  });

  it('timestep embedding (t x 1000, cos first)', () => {
    const emb = timestepEmbedding(x.timesteps as tf.Tensor1D, 256);
    expectClose(emb, x.t_emb!.dataSync(), { relL2: TOL, label: 'timestep_embedding' });
    emb.dispose();
  });

  it('EmbedND (3-axis RoPE over [txt; img] ids)', () => {
    const embed = new EmbedND(headDim(p), p.theta, p.axesDim);
    const before = tf.memory().numTensors;
    const ids = tf.concat([x.txt_ids!, x.img_ids!], 1) as tf.Tensor3D;
    const pe = embed.forward(ids);
    const bfl = ropeToBfl(pe);
    expect(bfl.shape).toEqual(x.pe!.shape);
    expectClose(bfl, x.pe!.dataSync(), { relL2: TOL, label: 'EmbedND' });
    tf.dispose([ids, pe.cos, pe.sin, bfl]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('DoubleStreamBlock 0', () => {
    const block = new DoubleStreamBlock(dims, scope(w, 'double_blocks.0.'));
    const pe = ropeFromBfl(x.pe!);
    const before = tf.memory().numTensors;
    const [img, txt] = block.forward(x['double0.img']!, x['double0.txt']!, x.vec!, pe);
    expectClose(img, x['double0.out_img']!.dataSync(), { relL2: TOL, label: 'double block img' });
    expectClose(txt, x['double0.out_txt']!.dataSync(), { relL2: TOL, label: 'double block txt' });
    tf.dispose([img, txt]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([pe.cos, pe.sin]);
  });

  it('SingleStreamBlock 0', () => {
    const block = new SingleStreamBlock(dims, scope(w, 'single_blocks.0.'));
    const pe = ropeFromBfl(x.pe!);
    const before = tf.memory().numTensors;
    const out = block.forward(x['single0.x']!, x.vec!, pe);
    expectClose(out, x['single0.out']!.dataSync(), { relL2: TOL, label: 'single block' });
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([pe.cos, pe.sin]);
  });

  it('LastLayer (shift first)', () => {
    const last = new LastLayer(scope(w, 'final_layer.'));
    const out = last.forward(x['final.x']!, x.vec!);
    expectClose(out, x.out_bfl!.dataSync(), { relL2: TOL, label: 'final layer' });
    out.dispose();
  });
});
