import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../packages/flux/src/runtime/backend.ts';
await initBackend({ backend: (process.env.B as any) ?? 'tensorflow' });
for (const [M, K, N] of [[256, 3072, 12288], [1280, 3072, 12288], [256,3072,3072]]) {
  const x = tf.randomNormal([M, K]);
  const wT = tf.randomNormal([N, K]);
  const w = tf.randomNormal([K, N]);
  const b = tf.randomNormal([N]);
  const run = async (name: string, f: () => tf.Tensor) => {
    await f().data();
    const t0 = performance.now();
    const r = 3;
    for (let i = 0; i < r; i++) { const y = f(); await y.data(); y.dispose(); }
    const ms = (performance.now() - t0) / r;
    console.log(`${M}x${K}x${N} ${name}: ${ms.toFixed(1)} ms, ${(2 * M * N * K / ms / 1e6).toFixed(1)} GFLOP/s`);
  };
  await run('transposeB', () => tf.matMul(x, wT, false, true));
  await run('plain', () => tf.matMul(x, w));
  await run('plain+bias', () => tf.tidy(() => tf.add(tf.matMul(x, w), b)));
  await run('fused+bias', () => tf.fused.matMul({ a: x, b: w, bias: b }));
}
