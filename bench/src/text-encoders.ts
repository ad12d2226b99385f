/**
 * `pnpm bench text-encoders [--backend B] [--t5-tokens 256] [--clip-tokens 77] [--reps N] [--precision P]`
 *
 * In bf16 (the default on the tensorflow backend) the Linear weights are bf16 handles in the checkpoint's [out, in]
 * layout and the streaming cost is the upload + bitcast of the stored bytes; in fp32 it is the host decode + upload.
 *
 * One full-size T5-XXL block (d_model 4096, 64 heads, d_ff 10240, random weights) at 256 tokens (schnell's
 * max_sequence_length), plus the per-block streaming cost (bf16 -> float32 on the host + upload of one block's
 * 4 + 3 matrices), and the whole CLIP-L text model (12 layers, random resident weights) at 77 tokens. The T5 encode
 * is extrapolated as 24 x (block + streaming). FLOPs: linears 2*M*N*K, attention 4*L^2*d_kv*H.
 *
 * `--full-sparse [--dir D]`: writes a header-only sparse bf16 T5-XXL checkpoint (2 shards + index + config.json, as
 * FLUX.1's text_encoder_2/; ~16 KB on disk, 9.5 GB apparent) and encodes one 256-token prompt through the real
 * folder loader in streamed mode: total time, ms per block and peak RSS (weights are zeros: timings are real,
 * values are not). Slow: ~2.5 TFLOP.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { CLIPTextModel } from '../../packages/flux/src/clip/clip-text-model.ts';
import { CLIP_L } from '../../packages/flux/src/clip/config.ts';
import { T5_XXL, type T5Config } from '../../packages/flux/src/t5/config.ts';
import { computeBias } from '../../packages/flux/src/t5/t5-attention.ts';
import { clipLayout } from '../../packages/flux/src/clip/keys.ts';
import { markPreTransposed } from '../../packages/flux/src/nn/linear.ts';
import { T5Block } from '../../packages/flux/src/t5/t5-block.ts';
import { loadT5EncoderModel } from '../../packages/flux/src/text-encoders/load.ts';
import { clipTextArchitecture, t5EncoderArchitecture } from '../../packages/flux/src/weights/architectures.ts';
import { memoryCheckpoint, type TensorReader } from '../../packages/flux/src/weights/checkpoint.ts';
import { CheckpointWeights } from '../../packages/flux/src/weights/checkpoint-weights.ts';
import type { Weights } from '../../packages/flux/src/weights/spec.ts';
import { DTYPE_SIZES, toFloat32 } from '../../packages/flux/src/weights/dtypes.ts';
import { bf16FromBytes, bf16FromFloat32, resolvePrecision, type Precision } from '../../packages/flux/src/runtime/bf16.ts';
import { writeSparseSafetensors } from '../../packages/flux/src/weights/safetensors.ts';
import { peakRssMiB, printTable, settle, setup, writeResults } from './common.ts';

/**
 * Random weights with a spec's shapes (norm weights 1), laid out as the loader hands them to a module
 * (weights/executor.ts): Linear weights [in, out], marked pre-transposed; `tables` kept as stored.
 */
function randomWeights(spec: Record<string, readonly number[]>, precision: Precision, tables: ReadonlySet<string> = new Set()): Weights {
  const out: Weights = {};
  for (const [k, shape] of Object.entries(spec)) {
    if (/norm/.test(k) && shape.length === 1) out[k] = tf.ones([...shape]);
    else if (shape.length === 2 && !tables.has(k) && precision === 'bf16') out[k] = bf16FromFloat32(tf.randomNormal([...shape], 0, 0.02, 'float32', 1), true);
    else if (shape.length === 2 && !tables.has(k)) out[k] = markPreTransposed(tf.randomNormal([shape[1]!, shape[0]!], 0, 0.02, 'float32', 1));
    else out[k] = tf.randomNormal([...shape], 0, 0.02, 'float32', 1);
  }
  return out;
}

/** Random host values for every tensor of a checkpoint table (for a model run through the real loader). */
function randomCheckpoint(table: ReadonlyMap<string, number[]>): TensorReader {
  return memoryCheckpoint([...table].map(([k, shape]) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (/norm/.test(k) && shape.length === 1 ? 1 : (Math.random() - 0.5) * 0.04));
    return [k, { data, shape }];
  }), 'random');
}

function t5BlockGflop(c: T5Config, L: number): number {
  const inner = c.numHeads * c.dKv;
  const linears = 2 * L * (4 * c.dModel * inner + (c.isGatedAct ? 3 : 2) * c.dModel * c.dFf);
  return (linears + 4 * L * L * c.dKv * c.numHeads) / 1e9;
}

async function timeAsync<T>(reps: number, fn: () => Promise<T>, done: (t: T) => Promise<void>): Promise<number> {
  await done(await fn()); // warm-up
  let total = 0;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const out = await fn();
    await done(out);
    total += performance.now() - t0;
  }
  return total / reps;
}

async function fullSparse(dirOpt: string | undefined, tokens: number, backend: string, precision: Precision): Promise<void> {
  const dir = dirOpt ?? (await mkdtemp(join(tmpdir(), 't5-xxl-sparse-')));
  try {
    const arch = t5EncoderArchitecture(T5_XXL);
    const entries = [...arch.tensors].map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
    const half = entries.findIndex((e) => e.name.startsWith('encoder.block.12.'));
    const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (const [s, part] of [entries.slice(0, half), entries.slice(half)].entries()) {
      total += await writeSparseSafetensors(join(dir, files[s]), part);
      for (const e of part) weightMap[e.name] = files[s];
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
    await writeFile(join(dir, 'config.json'), JSON.stringify({
      d_ff: 10240, d_kv: 64, d_model: 4096, feed_forward_proj: 'gated-gelu', layer_norm_epsilon: 1e-6, num_heads: 64, num_layers: 24,
      relative_attention_max_distance: 128, relative_attention_num_buckets: 32, vocab_size: 32128,
    }));
    console.log(`sparse T5-XXL checkpoint in ${dir}: ${(total / 2 ** 30).toFixed(2)} GiB apparent`);
    const rssBefore = peakRssMiB();
    const enc = await loadT5EncoderModel(dir, { residency: 'streamed', precision });
    const ids = [Array.from({ length: tokens }, (_, i) => (i < 20 ? 100 + i : i === 20 ? 1 : 0))];
    const t0 = performance.now();
    let last = t0;
    const blockMs: number[] = [];
    const out = await enc.model.forward(ids, {
      onBlock: async (i, h) => {
        await h.data();
        const now = performance.now();
        blockMs.push(now - last);
        last = now;
        console.log(`block ${i}: ${(now - t0) / 1000 | 0} s, peak RSS ${peakRssMiB().toFixed(0)} MiB, tensors ${tf.memory().numTensors}`);
      },
    });
    await out.data();
    const totalS = (performance.now() - t0) / 1000;
    out.dispose();
    await enc.close();
    const entry = {
      mode: 'full-sparse', backend, precision, tokens, total_s: totalS, block_ms_mean: blockMs.reduce((a, b) => a + b, 0) / blockMs.length,
      peak_rss_mib: peakRssMiB(), peak_rss_before_mib: rssBefore, embedding_row_bytes: enc.weights.rowBytesRead,
    };
    printTable([{ backend, precision, tokens, 'total s': totalS, 'block ms': entry.block_ms_mean, 'peak RSS MiB': entry.peak_rss_mib }]);
    writeResults(`text-encoders-full-sparse-${backend}${precision === 'fp32' ? '' : `-${precision}`}`, [entry]);
  } finally {
    if (!dirOpt) await rm(dir, { recursive: true, force: true });
  }
}

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, {
    't5-tokens': { type: 'string', default: '256' },
    'clip-tokens': { type: 'string', default: '77' },
    reps: { type: 'string', default: '2' },
    'full-sparse': { type: 'boolean', default: false },
    dir: { type: 'string' },
    precision: { type: 'string', default: 'auto' },
  });
  const precision = resolvePrecision(values.precision as 'auto' | 'bf16' | 'fp32');
  const t5Tokens = Number(values['t5-tokens']);
  const clipTokens = Number(values['clip-tokens']);
  const reps = Number(values.reps);
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; precision ${precision}`);
  if (values['full-sparse']) return fullSparse(values.dir as string | undefined, t5Tokens, backend.name, precision);

  // --- T5-XXL: one block
  const c = T5_XXL;
  const blockSpec = T5Block.spec(c, 0);
  const bw = randomWeights(blockSpec, precision, new Set(['layer.0.SelfAttention.relative_attention_bias.weight']));
  const block = new T5Block(c, bw);
  const x = tf.randomNormal([1, t5Tokens, c.dModel], 0, 1, 'float32', 2);
  const bias = computeBias(bw['layer.0.SelfAttention.relative_attention_bias.weight'] as tf.Tensor2D, t5Tokens, c);
  const blockMs = await timeAsync(reps, async () => block.forward(x, bias), async (t) => { await settle(t); t.dispose(); });
  tf.dispose([x, bias, ...Object.values(bw)]);
  // streaming cost per block: in fp32 bf16 bytes -> float32 on the host, then upload; in bf16 the bytes uploaded and
  // bitcast (zeros: the cost is data-independent)
  const shapes = Object.values(blockSpec).filter((s) => s.length === 2 && s[0]! > 64);
  const streamMs = await timeAsync(1, async () => {
    const ts: tf.Tensor[] = [];
    for (const s of shapes) {
      const bytes = new Uint8Array(s[0]! * s[1]! * DTYPE_SIZES.BF16);
      ts.push(precision === 'bf16' ? bf16FromBytes(bytes, [...s]) : tf.tensor(toFloat32('BF16', bytes), [...s]));
    }
    return ts;
  }, async (ts) => { if (precision !== 'bf16') await settle(ts); tf.dispose(ts); });
  const gf = t5BlockGflop(c, t5Tokens);
  const t5EncodeS = (c.numLayers * (blockMs + streamMs)) / 1000;

  // --- CLIP-L: the whole model, resident random weights
  const clipw = new CheckpointWeights(randomCheckpoint(clipTextArchitecture(CLIP_L).tensors), clipLayout(CLIP_L), { residency: 'resident', precision });
  clipw.loadAllSync();
  const clip = new CLIPTextModel(CLIP_L, clipw);
  const clipIds = [Array.from({ length: clipTokens }, (_, i) => (i === 0 ? 49406 : i < 10 ? 320 + i : 49407))];
  const clipMs = await timeAsync(reps, () => clip.forward(clipIds), async (o) => { await settle([o.lastHiddenState, o.pooledOutput]); tf.dispose([o.lastHiddenState, o.pooledOutput]); });
  clipw.dispose();

  const rows = [
    { model: 'T5-XXL block', tokens: t5Tokens, 'ms/layer': blockMs, 'stream ms/layer': streamMs, 'GFLOP/s': gf / (blockMs / 1000), 'encode s': t5EncodeS },
    { model: 'CLIP-L (12 layers)', tokens: clipTokens, 'ms/layer': clipMs / CLIP_L.numHiddenLayers, 'stream ms/layer': 0, 'GFLOP/s': 0, 'encode s': clipMs / 1000 },
  ];
  printTable(rows);
  console.log(`T5 encode s = ${c.numLayers} x (ms/layer + stream ms/layer), extrapolated; CLIP encode s measured (whole model)`);
  console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB`);
  writeResults(precision === 'fp32' ? 'text-encoders' : `text-encoders-${precision}`, [
    { model: 't5-xxl', backend: backend.name, precision, tokens: t5Tokens, reps, block_ms: blockMs, stream_ms_per_block: streamMs, block_gflop: gf, gflops: gf / (blockMs / 1000), layers: c.numLayers, encode_s_extrapolated: t5EncodeS },
    { model: 'clip-l', backend: backend.name, precision, tokens: clipTokens, reps, layer_ms: clipMs / CLIP_L.numHiddenLayers, encode_ms: clipMs, layers: CLIP_L.numHiddenLayers },
  ], { peak_rss_mib: peakRssMiB(), load_average: loadavg() });
}
