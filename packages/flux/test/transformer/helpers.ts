import * as tf from '@tensorflow/tfjs-core';
import { fixturePath, loadFixture, loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { fluxParamsFromDiffusers, type FluxParams } from '../../src/transformer/config.ts';
import type { Flux } from '../../src/transformer/flux.ts';
import { loadTransformer } from '../../src/transformer/load.ts';
import type { Rope } from '../../src/transformer/ops.ts';
import { memoryCheckpoint, openCheckpoint, type WeightValue } from '../../src/weights/checkpoint.ts';

export type Fixture = Record<string, { shape: number[]; data: ArrayLike<number> | ArrayBufferView }>;

export const CONFIGS = ['schnell-tiny', 'dev-tiny'] as const;
export type ConfigName = (typeof CONFIGS)[number];

/** Every tensor of a fixture file as a float32 tf tensor (caller disposes). */
export function toTensors(f: Fixture): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(f)) out[k] = tf.tensor(Float32Array.from(v.data as ArrayLike<number>), v.shape, 'float32');
  return out;
}

export async function loadWeights(name: ConfigName, format: 'bfl' | 'diffusers'): Promise<Record<string, tf.Tensor>> {
  return toTensors((await loadFixture('transformer', `${name}.${format}.safetensors`)) as Fixture);
}

export async function loadIo(name: ConfigName): Promise<Fixture> {
  return (await loadFixture('transformer', `${name}.io.safetensors`)) as Fixture;
}

export async function loadParams(name: ConfigName): Promise<FluxParams> {
  return fluxParamsFromDiffusers(await loadJsonFixture('transformer', `${name}.config.json`), `test/fixtures/transformer/${name}.config.json`);
}

/** The fixture checkpoint `name` in `format`, loaded resident (everything read at once; the file is closed again). */
export async function residentFlux(name: ConfigName, format: 'bfl' | 'diffusers', params?: FluxParams): Promise<Flux> {
  const ckpt = await openCheckpoint(fixturePath('transformer', `${name}.${format}.safetensors`));
  try {
    return await loadTransformer(ckpt, params ?? (await loadParams(name)), { residency: 'resident' });
  } finally {
    await ckpt.close();
  }
}

/** A resident model from weights in memory (BFL or diffusers names). */
export function fluxFromValues(params: FluxParams, values: Record<string, WeightValue>): Promise<Flux> {
  return loadTransformer(memoryCheckpoint(values), params, { residency: 'resident' });
}

/** BFL's pe [B, 1, L, D/2, 2, 2] = [[cos, -sin], [sin, cos]] -> {cos, sin} [B, 1, L, D/2]. */
export function ropeFromBfl(pe: tf.Tensor): Rope {
  return tf.tidy(() => {
    const [b, one, l, half] = pe.shape as number[];
    const flat = tf.reshape(pe, [b!, one!, l!, half!, 4]);
    const cos = tf.reshape(tf.slice(flat, [0, 0, 0, 0, 0], [-1, -1, -1, -1, 1]), [b!, one!, l!, half!]);
    const sin = tf.reshape(tf.slice(flat, [0, 0, 0, 0, 2], [-1, -1, -1, -1, 1]), [b!, one!, l!, half!]);
    return { cos: cos as tf.Tensor4D, sin: sin as tf.Tensor4D };
  }) as unknown as Rope;
}

/** {cos, sin} -> BFL's [B, 1, L, D/2, 2, 2] layout. */
export function ropeToBfl(r: Rope): tf.Tensor {
  return tf.tidy(() => {
    const [b, one, l, half] = r.cos.shape;
    return tf.reshape(tf.stack([r.cos, tf.neg(r.sin), r.sin, r.cos], -1), [b, one, l, half, 2, 2]);
  });
}
