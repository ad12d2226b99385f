import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../../../test/harness/compare.ts';
import { loadFixture, type FixtureTensor } from '../../../test/harness/fixtures.ts';
import { imageIds, imageIdsData, imageTokens, latentShape, packLatents, textIds, unpackLatents } from '../src/packing.ts';

// Fixtures: diffusers FluxPipeline._pack_latents / _unpack_latents / _prepare_latent_image_ids (gen_core.py).
const CASES = [
  { width: 256, height: 512, batch: 2 },
  { width: 768, height: 384, batch: 1 },
  { width: 128, height: 128, batch: 2 },
];

let fx: Record<string, FixtureTensor>;
beforeAll(async () => {
  fx = await loadFixture('core', 'packing.safetensors');
});

function arange(shape: number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, (_, i) => i), shape, 'float32');
}

describe('packing', () => {
  it('latentShape is [B, 16, 2*floor(H/16), 2*floor(W/16)]', () => {
    expect(latentShape(512, 512)).toEqual([1, 16, 64, 64]);
    expect(latentShape(256, 512, 2)).toEqual([2, 16, 64, 32]);
    expect(latentShape(768, 384)).toEqual([1, 16, 48, 96]);
    expect(latentShape(1000, 1016)).toEqual([1, 16, 126, 124]); // floors like diffusers 2*(x//16)
    expect(imageTokens(1024, 1024)).toBe(4096);
    expect(() => latentShape(0, 512)).toThrow(/width/);
    expect(() => latentShape(512, 12.5)).toThrow(/height/);
  });

  for (const { width, height, batch } of CASES) {
    const key = `${width}x${height}_b${batch}`;
    it(`pack / unpack / ids match diffusers bit for bit: ${key}`, () => {
      const before = tf.memory().numTensors;
      const shape = latentShape(width, height, batch);
      const x = arange(shape);
      const packed = packLatents(x);
      expect(packed.shape).toEqual(fx[`${key}.packed`].shape);
      expectClose(packed, fx[`${key}.packed`].data as Float32Array, { relL2: 0, maxAbs: 0, label: `${key} packed` });

      const y = arange(packed.shape);
      const unpacked = unpackLatents(y, width, height);
      expect(unpacked.shape).toEqual(fx[`${key}.unpacked`].shape);
      expectClose(unpacked, fx[`${key}.unpacked`].data as Float32Array, { relL2: 0, maxAbs: 0, label: `${key} unpacked` });

      const roundTrip = unpackLatents(packed, width, height);
      expectClose(roundTrip, x.dataSync(), { relL2: 0, maxAbs: 0, label: `${key} round trip` });

      const ids = imageIds(width, height);
      expect(ids.shape).toEqual(fx[`${key}.img_ids`].shape);
      expectClose(ids, fx[`${key}.img_ids`].data as Float32Array, { relL2: 0, maxAbs: 0, label: `${key} img_ids` });
      expect(Array.from(imageIdsData(width, height))).toEqual(Array.from(ids.dataSync()));

      tf.dispose([x, packed, y, unpacked, roundTrip, ids]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('textIds are zeros [Lt, 3]', () => {
    const t = textIds(5);
    expect(t.shape).toEqual([5, 3]);
    expect(Array.from(t.dataSync())).toEqual(new Array(15).fill(0));
    t.dispose();
  });

  it('rejects shapes that cannot be packed or unpacked, naming the shape', () => {
    const odd = tf.zeros([1, 16, 3, 4]);
    expect(() => packLatents(odd)).toThrow(/\[1, 16, 3, 4\]/);
    const wrong = tf.zeros([1, 10, 64]);
    expect(() => unpackLatents(wrong, 128, 128)).toThrow(/\[B, 64, 4k\]/);
    tf.dispose([odd, wrong]);
  });
});
