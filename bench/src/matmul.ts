/**
 * `pnpm bench matmul [--backend tensorflow] [--shape 1280,3072,12288] [--reps 3]`: one FLUX-sized Linear
 * (M tokens x K in x N out; default a 512x512 double block's MLP: 1280 x 3072 -> 12288) in every layout and
 * precision the models could use, side by side in one run:
 *   fp32  tf.matMul with the weight [in, out] (pre-transposed), and [out, in] with transposeB;
 *   bf16  BatchMatMulV2 on the checkpoint's [out, in] with adj_y (what the bf16 mode runs), and on [in, out].
 * Prints ms, GFLOP/s and the bf16 result's relative L2 against fp32. Native tensorflow backend only for bf16.
 */
import { cpus, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { bf16Available, bf16FromFloat32, matMulBf16 } from '../../packages/flux/src/runtime/bf16.ts';
import { printTable, setup, writeResults } from './common.ts';

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, { shape: { type: 'string', default: '1280,3072,12288' }, reps: { type: 'string', default: '3' } });
  const [M, K, N] = String(values.shape).split(',').map(Number) as [number, number, number];
  const reps = Number(values.reps);
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`machine: ${cpus().length} cores, load average ${load}; [${M}, ${K}] x [${K}, ${N}]`);
  const x = tf.randomNormal([M, K], 0, 1, 'float32', 1);
  const wOutIn = tf.randomNormal([N, K], 0, 0.02, 'float32', 2);
  const wInOut = tf.transpose(wOutIn);
  const gflop = (2 * M * K * N) / 1e9;
  const time = (fn: () => tf.Tensor): number => {
    // The block returns nothing: tidy walks whatever it returns looking for tensors, element by element for a typed
    // array (2 s for this output: the figures of an earlier version of this benchmark were that walk, not the matmul).
    const once = () => tf.tidy(() => {
      fn().dataSync();
    });
    once(); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) once();
    return (performance.now() - t0) / reps;
  };
  const rows: Record<string, string | number>[] = [];
  const add = (precision: string, layout: string, ms: number, err?: number) =>
    rows.push({ precision, layout, ms, 'GFLOP/s': gflop / (ms / 1000), 'relL2 vs fp32': err === undefined ? '-' : err.toExponential(2) });
  add('fp32', '[in, out]', time(() => tf.matMul(x, wInOut)));
  add('fp32', '[out, in], transposeB', time(() => tf.matMul(x, wOutIn, false, true)));
  if (bf16Available()) {
    const ref = tf.matMul(x, wInOut);
    const bOutIn = bf16FromFloat32(wOutIn);
    const bInOut = bf16FromFloat32(wInOut);
    const err = (y: tf.Tensor) => tf.tidy(() => tf.norm(tf.sub(y, ref)).dataSync()[0]! / tf.norm(ref).dataSync()[0]!);
    const e1 = tf.tidy(() => err(matMulBf16(x, bOutIn, false, true)));
    add('bf16', '[out, in], adj_y (the checkpoint layout)', time(() => matMulBf16(x, bOutIn, false, true)), e1);
    const e2 = tf.tidy(() => err(matMulBf16(x, bInOut)));
    add('bf16', '[in, out]', time(() => matMulBf16(x, bInOut)), e2);
    tf.dispose([ref, bOutIn, bInOut]);
  } else console.log(`bf16: skipped (${backend.name} backend)`);
  printTable(rows);
  writeResults('matmul', rows.map((r) => ({ backend: backend.name, m: M, k: K, n: N, reps, ...r })), { backend: backend.name, device: backend.device, load_average_start: load });
  tf.dispose([x, wOutIn, wInOut]);
}
