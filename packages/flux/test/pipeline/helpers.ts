/**
 * A tiny dev checkpoint in BFL format, derived here in TypeScript from the committed diffusers tiny dev fixture
 * (test/fixtures/pipeline/tiny-flux-dev/transformer, made by test/reference/gen_pipeline.py) by applying the
 * transformer's rename rules (src/transformer/keys.ts) on the host, without the device layout step: q/k/v
 * concatenated, the final layer's halves swapped, every other key renamed. The rules themselves are checked against
 * diffusers' own converter by test/transformer/keys.parity.test.ts, so this is the file diffusers would convert to.
 */
import { copyFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fixturePath, loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { fluxParamsFromDiffusers } from '../../src/transformer/config.ts';
import { transformerLayout } from '../../src/transformer/keys.ts';
import { assemble } from '../../src/weights/assemble.ts';
import { loadSafetensors, writeSafetensors, type NamedTensor } from '../../src/weights/safetensors.ts';

export const TINY = fixturePath('pipeline', 'tiny-flux');

/** One seed-for-seed case of test/fixtures/pipeline/cases.json (test/reference/gen_pipeline.py). */
export interface PipelineCase {
  name: string;
  kind: 'txt2img' | 'img2img';
  prompt: string;
  width: number;
  height: number;
  steps: number;
  seed: number;
  max_sequence_length: number;
  num_images: number;
  strength?: number;
  guidance?: number;
  /** 'tiny-flux-dev': the dev transformer + scheduler of tiny-flux-dev/ with tiny-flux's other components. */
  model?: string;
}

/** The seed-for-seed cases diffusers ran (cases.json). */
export async function pipelineCases(): Promise<PipelineCase[]> {
  return ((await loadJsonFixture('pipeline', 'cases.json')) as { cases: PipelineCase[] }).cases;
}
export const TINY_DEV = fixturePath('pipeline', 'tiny-flux-dev');

/** Writes tiny-flux-dev's transformer as a BFL single file at `file`; with `config`, its config.json beside it. */
export async function writeTinyDevBfl(file: string, config = false): Promise<void> {
  const params = fluxParamsFromDiffusers(await loadJsonFixture('pipeline', 'tiny-flux-dev/transformer/config.json'));
  const src = await loadSafetensors(join(TINY_DEV, 'transformer', 'diffusion_pytorch_model.safetensors'));
  const out: Record<string, NamedTensor> = {};
  for (const rule of transformerLayout(params, 'diffusers-transformer').rules) {
    const parts = rule.from.map((k) => {
      const t = src[k]!;
      const data = t.data as Float32Array;
      return { dtype: 'F32' as const, shape: t.shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    });
    const a = assemble(parts, rule.op === 'conv1x1' ? 'rename' : rule.op, false);
    out[rule.key] = { dtype: 'F32', shape: a.shape, data: Float32Array.from(a.data) };
  }
  await writeSafetensors(file, out);
  if (config) await copyFile(join(TINY_DEV, 'transformer', 'config.json'), join(dirname(file), 'config.json'));
}
