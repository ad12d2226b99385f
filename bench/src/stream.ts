/**
 * `pnpm bench stream [--backend B] [--format diffusers|bfl] [--dtype BF16|F8_E4M3] [--keep DIR]`: what streaming
 * the full-size FLUX.1 [schnell] transformer costs per denoising step WITHOUT the compute: every module's weights
 * read, decoded, laid out (diffusers -> BFL rows, Linear weights transposed) and uploaded, then released, in
 * forward order, as the streamed transformer does once per step. The checkpoint is written header-only (sparse: real key
 * names and shapes, data reads as zeros), so this measures the host work, not the disk: with real weights that do
 * not fit the page cache, add the disk read of the checkpoint (23.8 GB in bf16) per step, which the prefetch of the
 * next module overlaps with compute.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  bflTransformerArchitecture, diffusersTransformerArchitecture, Flux, FLUX_SCHNELL, openCheckpoint, openTransformerWeights, writeSparseSafetensors,
  type Dtype,
} from '@flux-ts/flux';
import { peakRssMiB, printTable, setup, writeResults } from './common.ts';

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, {
    format: { type: 'string', default: 'diffusers' },
    dtype: { type: 'string', default: 'BF16' },
    keep: { type: 'string' },
  });
  const format = values.format as string;
  const dtype = values.dtype as Dtype;
  if (format !== 'diffusers' && format !== 'bfl') throw new Error(`--format must be diffusers or bfl, got ${format}`);
  if (dtype !== 'BF16' && dtype !== 'F8_E4M3' && dtype !== 'F16') throw new Error(`--dtype must be BF16, F16 or F8_E4M3, got ${dtype}`);
  const dir = (values.keep as string | undefined) ?? mkdtempSync(join(tmpdir(), 'flux-stream-'));
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  try {
    const arch = format === 'bfl' ? bflTransformerArchitecture(FLUX_SCHNELL) : diffusersTransformerArchitecture(FLUX_SCHNELL);
    const file = join(dir, `transformer-${format}-${dtype}.safetensors`);
    // Norm scales stay BF16 in fp8 checkpoints too; only the 2-D weights are fp8.
    const entries = [...arch.tensors].map(([name, shape]) => ({ name, dtype: shape.length === 2 && dtype !== 'BF16' ? dtype : ('BF16' as Dtype), shape }));
    const bytes = await writeSparseSafetensors(file, entries);
    console.log(`header-only ${format} ${dtype} transformer: ${(bytes / 1e9).toFixed(1)} GB apparent`);
    const ckpt = await openCheckpoint(file);
    const src = openTransformerWeights(ckpt, FLUX_SCHNELL, { residency: 'streamed', prefetch: false });
    const order = new Flux(FLUX_SCHNELL, src).moduleOrder;
    const perKind: Record<string, number[]> = { double: [], single: [], other: [] };
    const t0 = performance.now();
    for (const prefix of order) {
      const t = performance.now();
      const w = await src.get(prefix);
      src.release(prefix, w);
      const kind = prefix.startsWith('double_blocks.') ? 'double' : prefix.startsWith('single_blocks.') ? 'single' : 'other';
      perKind[kind]!.push(performance.now() - t);
    }
    const totalMs = performance.now() - t0;
    await ckpt.close();
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const row = {
      format, dtype, 'step s': totalMs / 1000, 'double block ms': mean(perKind.double!), 'single block ms': mean(perKind.single!),
      'peak RSS MiB': peakRssMiB(), tensors: tf.memory().numTensors,
    };
    printTable([row]);
    writeResults(`stream-${format}-${dtype}`, [{
      backend: backend.name, format, dtype, step_ms: totalMs, double_block_ms: mean(perKind.double!), single_block_ms: mean(perKind.single!),
      other_ms: perKind.other!.reduce((a, b) => a + b, 0), peak_rss_mib: Math.round(peakRssMiB()),
    }], { backend: backend.name, device: backend.device, load_average_start: load });
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}
