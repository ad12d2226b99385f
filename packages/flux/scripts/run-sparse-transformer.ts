/**
 * Opt-in check (not a test: it takes minutes): a full-size FLUX.1 [schnell] transformer checkpoint written
 * header-only (sparse: BFL keys and shapes, BF16, ~23.8 GB apparent, a few KB on disk, data reads as zeros), opened
 * in streamed residency and run for ONE step at 256x256 (256 text tokens). The output is meaningless (zero weights);
 * the memory (peak RSS, tfjs bytes) and the key coverage are real.
 *
 *   pnpm exec tsx packages/flux/scripts/run-sparse-transformer.ts [--backend wasm] [--size 256] [--keep PATH]
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import {
  bflTransformerArchitecture,
  FLUX_SCHNELL,
  initBackend,
  openCheckpoint,
  writeSparseSafetensors,
} from '../src/index.ts';
import { loadTransformer } from '../src/transformer/load.ts';

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { backend: { type: 'string', default: 'wasm' }, size: { type: 'string', default: '256' }, keep: { type: 'string' } },
  });
  const backend = await initBackend({ backend: values.backend });
  console.log(`backend: ${backend.name} (${backend.device}); load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const size = Number(values.size);
  const side = size / 16;
  const lImg = side * side;
  const lTxt = 256;

  const dir = values.keep ? undefined : await mkdtemp(join(tmpdir(), 'flux-sparse-'));
  const path = values.keep ?? join(dir!, 'flux1-schnell.sparse.safetensors');
  const arch = bflTransformerArchitecture(FLUX_SCHNELL);
  const entries = [...arch.tensors].map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
  const bytes = await writeSparseSafetensors(path, entries, { format: 'pt' });
  console.log(`sparse checkpoint: ${entries.length} tensors, ${(bytes / 1e9).toFixed(2)} GB apparent, ${path}`);

  const t0 = performance.now();
  const ckpt = await openCheckpoint(path);
  let maxBytes = 0;
  let maxAt = '';
  let modules = 0;
  const moduleStart = performance.now();
  let last = moduleStart;
  const flux = await loadTransformer(ckpt, FLUX_SCHNELL, {
    residency: 'streamed',
    onModule: (prefix, phase) => {
      const b = tf.memory().numBytes;
      if (b > maxBytes) {
        maxBytes = b;
        maxAt = `${prefix} (${phase})`;
      }
      if (phase === 'ran') {
        modules++;
        const now = performance.now();
        if (modules % 10 === 0 || prefix.startsWith('final')) {
          console.log(`  ${prefix.padEnd(18)} done, ${((now - moduleStart) / 1000).toFixed(0)} s, last module ${((now - last) / 1000).toFixed(1)} s, peak RSS ${peakRssMiB().toFixed(0)} MiB`);
        }
        last = now;
      }
    },
  });
  const before = tf.memory().numTensors;
  const out = await flux.forward({
    img: tf.zeros([1, lImg, FLUX_SCHNELL.inChannels]),
    img_ids: tf.zeros([lImg, 3]),
    txt: tf.zeros([1, lTxt, FLUX_SCHNELL.contextInDim]),
    txt_ids: tf.zeros([lTxt, 3]),
    timesteps: tf.tensor1d([1]),
    y: tf.zeros([1, FLUX_SCHNELL.vecInDim]),
  });
  const s = tf.sum(out);
  const sum = (await s.data())[0];
  s.dispose();
  const seconds = (performance.now() - t0) / 1000;
  console.log(`output [${out.shape.join(', ')}], sum ${sum} (zero weights), ${modules} modules`);
  console.log(`one step at ${size}x${size}: ${seconds.toFixed(1)} s; peak RSS (VmHWM) ${peakRssMiB().toFixed(0)} MiB; ` +
    `peak tfjs bytes between modules ${(maxBytes / 2 ** 20).toFixed(0)} MiB at ${maxAt}; tensors ${tf.memory().numTensors} (before ${before} + 7 inputs + 1 output)`);
  out.dispose();
  await ckpt.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
