/**
 * `pnpm bench transformer [--backend B] [--sizes 256,512,1024] [--reps N]` (the attention head chunk is chosen automatically)
 *
 * One DoubleStreamBlock and one SingleStreamBlock of FLUX.1 at full width (hidden 3072, 24 heads, mlp 12288) with
 * random weights, at the token counts of schnell requests (256 text tokens + (size/16)^2 image tokens), timed on
 * the chosen backend. The transformer step is extrapolated as depth x double + depthSingleBlocks x single
 * (19 + 38; the embedders and final layer are negligible). FLOPs: linears 2*M*N*K, attention 4*L^2*D*H.
 */
import { cpus, loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { DoubleStreamBlock, type BlockDims } from '../../packages/flux/src/transformer/double-stream-block.ts';
import { SingleStreamBlock } from '../../packages/flux/src/transformer/single-stream-block.ts';
import { EmbedND } from '../../packages/flux/src/transformer/embed-nd.ts';
import { autoHeadChunk } from '../../packages/flux/src/transformer/flux.ts';
import { markPreTransposed } from '../../packages/flux/src/nn/linear.ts';
import { FLUX_SCHNELL, headDim, mlpHiddenDim } from '@flux-ts/flux';
import { peakRssMiB, printTable, settle, setup, writeResults } from './common.ts';

const P = FLUX_SCHNELL;
const TXT_TOKENS = 256; // schnell's T5 max_sequence_length

/**
 * Random block weights (std 0.02, norm scales 1): values do not matter for timing, only shapes. Linear weights are
 * made as the loader lays them out (weights/executor.ts): [in, out], marked pre-transposed.
 */
function randomWeights(spec: Record<string, readonly number[]>): Record<string, tf.Tensor> {
  const w: Record<string, tf.Tensor> = {};
  for (const [k, shape] of Object.entries(spec)) {
    if (k.endsWith('.scale')) w[k] = tf.ones([...shape]);
    else if (shape.length === 2) w[k] = markPreTransposed(tf.randomNormal([shape[1]!, shape[0]!], 0, 0.02, 'float32', 1));
    else w[k] = tf.randomNormal([...shape], 0, 0.02, 'float32', 1);
  }
  return w;
}

/** Image ids of a (h/16) x (w/16) latent grid and zero text ids, as the sampler builds them. */
function positions(imgTokensSide: number): tf.Tensor3D {
  const ids = new Float32Array((TXT_TOKENS + imgTokensSide * imgTokensSide) * 3);
  for (let r = 0; r < imgTokensSide; r++) {
    for (let c = 0; c < imgTokensSide; c++) {
      const i = TXT_TOKENS + r * imgTokensSide + c;
      ids[i * 3 + 1] = r;
      ids[i * 3 + 2] = c;
    }
  }
  return tf.tensor3d(ids, [1, ids.length / 3, 3]);
}

function gflop(lImg: number): { double: number; single: number } {
  const h = P.hiddenSize;
  const m = mlpHiddenDim(P);
  const l = TXT_TOKENS + lImg;
  const attn = 4 * l * l * headDim(P) * P.numHeads;
  // per stream: qkv (h -> 3h), proj (h -> h), mlp (h -> m -> h); modulation is one row per batch entry
  const stream = (tokens: number) => 2 * tokens * (h * 3 * h + h * h + 2 * h * m);
  const double = stream(lImg) + stream(TXT_TOKENS) + attn + 2 * 2 * (h * 6 * h);
  const single = 2 * l * (h * (3 * h + m) + (h + m) * h) + attn + 2 * h * 3 * h;
  return { double: double / 1e9, single: single / 1e9 };
}

async function timeIt(reps: number, fn: () => tf.Tensor | tf.Tensor[]): Promise<number> {
  // one warm-up run (kernel setup, allocator), then the mean of `reps`
  const warm = fn();
  await settle(warm);
  tf.dispose(warm);
  let total = 0;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const out = fn();
    await settle(out);
    total += performance.now() - t0;
    tf.dispose(out);
  }
  return total / reps;
}

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, {
    sizes: { type: 'string', default: '256,512,1024' },
    reps: { type: 'string', default: '2' },
    'head-chunk': { type: 'string' },
  });
  const sizes = String(values.sizes).split(',').map((s) => Number(s.trim()));
  if (sizes.some((s) => !Number.isInteger(s) || s < 16 || s % 16 !== 0)) throw new Error(`--sizes: multiples of 16 expected, got ${values.sizes}`);
  const reps = Number(values.reps);
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${load}`);

  const dims: BlockDims = { hidden_size: P.hiddenSize, num_heads: P.numHeads, mlp_ratio: P.mlpRatio, qkv_bias: P.qkvBias };
  // One block's weights on the device at a time, as in streamed residency (both blocks together do not fit the
  // 4 GB wasm heap next to 512² activations). Linear weights pre-transposed to [in, out] as the loaders hand them out.
  async function timeBlock<B>(spec: Record<string, readonly number[]>, make: (w: Record<string, tf.Tensor>) => B,
    run: (block: B) => tf.Tensor | tf.Tensor[]): Promise<number> {
    const w = randomWeights(spec);
    try {
      const block = make(w);
      return await timeIt(reps, () => run(block));
    } finally {
      tf.dispose(Object.values(w));
    }
  }
  const embed = new EmbedND(headDim(P), P.theta, P.axesDim);
  const rows: Record<string, string | number>[] = [];
  const entries: Record<string, unknown>[] = [];

  for (const size of sizes) {
    const side = size / 16;
    const lImg = side * side;
    const l = TXT_TOKENS + lImg;
    const chunk = values['head-chunk'] ? Number(values['head-chunk']) : autoHeadChunk(1, P.numHeads, l);
    const ids = positions(side);
    const pe = embed.forward(ids);
    const img = tf.randomNormal([1, lImg, P.hiddenSize], 0, 1, 'float32', 2);
    const txt = tf.randomNormal([1, TXT_TOKENS, P.hiddenSize], 0, 1, 'float32', 3);
    const x = tf.randomNormal([1, l, P.hiddenSize], 0, 1, 'float32', 4);
    const vec = tf.randomNormal([1, P.hiddenSize], 0, 1, 'float32', 5);

    const doubleMs = await timeBlock(DoubleStreamBlock.spec(dims), (w) => new DoubleStreamBlock(dims, w),
      (double) => double.forward(img, txt, vec, pe, chunk));
    const singleMs = await timeBlock(SingleStreamBlock.spec(dims), (w) => new SingleStreamBlock(dims, w),
      (single) => single.forward(x, vec, pe, chunk));
    tf.dispose([ids, pe.cos, pe.sin, img, txt, x, vec]);

    const f = gflop(lImg);
    const stepMs = P.depth * doubleMs + P.depthSingleBlocks * singleMs;
    const stepGflop = P.depth * f.double + P.depthSingleBlocks * f.single;
    const gflops = stepGflop / (stepMs / 1000);
    rows.push({
      size: `${size}x${size}`, tokens: l, 'head chunk': chunk, 'double ms': doubleMs, 'single ms': singleMs,
      'double GFLOP/s': f.double / (doubleMs / 1000), 'single GFLOP/s': f.single / (singleMs / 1000),
      'step s': stepMs / 1000, 'step GFLOP/s': gflops,
    });
    entries.push({
      backend: backend.name, width: size, height: size, tokens: l, img_tokens: lImg, txt_tokens: TXT_TOKENS, head_chunk: chunk, reps,
      double_block_ms: doubleMs, single_block_ms: singleMs, step_ms: stepMs,
      double_gflop: f.double, single_gflop: f.single, step_gflop: stepGflop, gflops,
    });
    console.log(`${size}x${size}: double ${doubleMs.toFixed(0)} ms, single ${singleMs.toFixed(0)} ms, step ${(stepMs / 1000).toFixed(1)} s, ${gflops.toFixed(1)} GFLOP/s`);
  }
  printTable(rows);
  writeResults('transformer', entries, {
    backend: backend.name, device: backend.device, cores: cpus().length, load_average_start: load,
    load_average_end: loadavg().map((v) => v.toFixed(2)).join(' '), peak_rss_mib: Math.round(peakRssMiB()),
    extrapolation: `${P.depth} x double + ${P.depthSingleBlocks} x single`, txt_tokens: TXT_TOKENS,
  });
}
