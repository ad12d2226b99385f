/**
 * `pnpm bench vae [--backend B] [--sizes 512,1024] [--tiling auto|on|off] [--budget-mib N] [--runs N] [--precision P]`:
 * the full-size FLUX VAE decoder (FLUX_VAE dims, random weights) decoding a [1, 16, S/8, S/8] latent to S x S, in
 * bf16 (convolutions on oneDNN; the default on the tensorflow backend) or fp32.
 * Reports ms per decode, whether it was tiled (with 'auto', tiling is chosen when the estimated peak activation
 * memory exceeds the backend's budget: on wasm the 4 GiB heap, so 1024² is decoded in tiles there), the estimate,
 * the peak of tf.memory().numBytes during the decode, the wasm heap size, and the process's peak RSS.
 * Writes bench/results/vae.json.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FLUX_VAE } from '@flux-ts/flux';
import { AutoEncoder, type TilingChoice } from '../../packages/flux/src/autoencoder/autoencoder.ts';
import { autoEncoderFromWeights } from '../../packages/flux/src/autoencoder/load.ts';
import { resolvePrecision, type Precision } from '../../packages/flux/src/runtime/bf16.ts';
import { peakRssMiB, printTable, settle, setup, writeResults } from './common.ts';

const MiB = 2 ** 20;

/**
 * Deterministic fill (xorshift) so runs are comparable: kaiming-uniform-like weights, unit GroupNorm, for every
 * parameter of the model's spec, loaded through the same path as a checkpoint (autoEncoderFromWeights).
 */
function randomAutoEncoder(precision: Precision): AutoEncoder {
  let s = 0x9e3779b9;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const values = new Map<string, { data: Float32Array; shape: readonly number[] }>();
  for (const [key, shape] of Object.entries(AutoEncoder.spec(FLUX_VAE))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const weight = key.endsWith('.weight');
    if (/norm/.test(key)) data.fill(weight ? 1 : 0);
    else {
      const fanIn = shape.length === 4 ? shape[1]! * shape[2]! * shape[3]! : shape[0]!;
      const bound = weight ? 1 / Math.sqrt(fanIn) : 0.01;
      for (let i = 0; i < n; i++) data[i] = (rnd() * 2 - 1) * bound;
    }
    values.set(key, { data, shape });
  }
  return autoEncoderFromWeights(FLUX_VAE, values, 'random FLUX VAE', { precision });
}

/** Peak of tf.memory().numBytes while `f` runs (wraps the engine's internal trackTensor; bench-only). */
function trackPeakBytes<T>(f: () => T): { result: T; peakBytes: number } {
  const engine = tf.engine() as unknown as { trackTensor: (...a: unknown[]) => void; state: { numBytes: number } };
  const orig = engine.trackTensor;
  let peak = engine.state.numBytes;
  engine.trackTensor = function (this: unknown, ...a: unknown[]) {
    orig.apply(this, a);
    if (engine.state.numBytes > peak) peak = engine.state.numBytes;
  };
  try {
    return { result: f(), peakBytes: peak };
  } finally {
    engine.trackTensor = orig;
  }
}

function wasmHeapMiB(): number | null {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8 ? b.wasm.HEAPU8.buffer.byteLength / MiB : null;
}

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, {
    sizes: { type: 'string', default: '512,1024' },
    tiling: { type: 'string', default: 'auto' },
    'budget-mib': { type: 'string' },
    runs: { type: 'string', default: '1' },
    precision: { type: 'string', default: 'auto' },
  });
  const precision = resolvePrecision(values.precision as 'auto' | 'bf16' | 'fp32');
  const sizes = String(values.sizes).split(',').map((s) => Number(s.trim()));
  if (sizes.some((s) => !Number.isInteger(s) || s < 8 || s % 8 !== 0)) throw new Error(`--sizes must be multiples of 8, got ${values.sizes}`);
  const tilingArg = String(values.tiling);
  if (!['auto', 'on', 'off'].includes(tilingArg)) throw new Error(`--tiling must be auto, on or off, got ${tilingArg}`);
  const tiling: TilingChoice = tilingArg === 'auto' ? 'auto' : tilingArg === 'on';
  const memoryBudgetBytes = values['budget-mib'] !== undefined ? Number(values['budget-mib']) * MiB : undefined;
  const runs = Math.max(1, Number(values.runs) || 1);

  const ae = randomAutoEncoder(precision);
  const weightBytes = tf.memory().numBytes;
  console.log(`decoder weights: ${(weightBytes / MiB).toFixed(0)} MiB as tfjs counts them (random, FLUX_VAE dims; a bf16 handle counts 4 bytes a value); precision ${precision}; tiling ${tilingArg}`);

  const entries: Record<string, unknown>[] = [];
  const rows: Record<string, string | number>[] = [];
  for (const size of sizes) {
    const l = size / 8;
    const z = tf.randomNormal([1, FLUX_VAE.zChannels, l, l], 0, 1, 'float32', 1) as tf.Tensor4D;
    const plan = ae.planDecode(z.shape, { tiling, memoryBudgetBytes });
    console.log(`${size}²: ${plan.tiled ? `tiled (${plan.tileOut}px tiles)` : 'whole'}: ${plan.reason}`);
    const times: number[] = [];
    let peakBytes = 0;
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      const { result: img, peakBytes: p } = trackPeakBytes(() => ae.decode(z, { tiling, memoryBudgetBytes }));
      await settle(img);
      times.push(performance.now() - t0);
      peakBytes = Math.max(peakBytes, p);
      const finite = tf.tidy(() => tf.all(tf.isFinite(img)).dataSync()[0]);
      if (!finite) console.warn(`warning: ${size}² decode produced non-finite values`);
      img.dispose();
    }
    z.dispose();
    times.sort((a, b) => a - b);
    const entry = {
      precision,
      size,
      latent: [1, FLUX_VAE.zChannels, l, l],
      tiled: plan.tiled,
      tileSize: plan.tiled ? plan.tileOut : null,
      reason: plan.reason,
      ms: times[Math.floor(times.length / 2)],
      msMin: times[0],
      runs,
      estimatedPeakMiB: plan.wholeBytes / MiB,
      estimatedTilePeakMiB: plan.tileBytes / MiB,
      budgetMiB: plan.budgetBytes === null ? null : plan.budgetBytes / MiB,
      tensorPeakMiB: (peakBytes - weightBytes) / MiB,
      tensorPeakWithWeightsMiB: peakBytes / MiB,
      wasmHeapMiB: wasmHeapMiB(),
      peakRssMiB: peakRssMiB(),
    };
    entries.push(entry);
    rows.push({
      precision,
      size: `${size}²`,
      mode: plan.tiled ? `tiled ${plan.tileOut}px` : 'whole',
      ms: entry.ms,
      'est MiB': Math.round(entry.estimatedPeakMiB),
      'tensor peak MiB': Math.round(entry.tensorPeakMiB),
      'wasm heap MiB': entry.wasmHeapMiB === null ? '-' : Math.round(entry.wasmHeapMiB),
      'peak RSS MiB': Math.round(entry.peakRssMiB),
    });
  }
  ae.dispose();
  printTable(rows);
  writeResults(precision === 'fp32' ? 'vae' : `vae-${precision}`, entries, {
    precision,
    backend: backend.name,
    device: backend.device,
    tiling: tilingArg,
    budgetMiB: memoryBudgetBytes === undefined ? null : memoryBudgetBytes / MiB,
    weightsMiB: weightBytes / MiB,
    note: 'tensorPeakMiB = peak of tf.memory().numBytes during the decode minus the weights; peak RSS and wasm heap are process-wide high-water marks (sizes run in order)',
  });
}
