/**
 * `pnpm bench pipeline [--backend B] [--size 128] [--steps 4] [--reps 2]`: the whole generate() on the tiny random
 * pipeline of the parity test (test/fixtures/pipeline/tiny-flux), per stage.
 *
 * `pnpm bench pipeline --full-sparse [--size 512] [--steps 4] [--backend B]`: the same on a FULL-SIZE FLUX.1
 * [schnell] diffusers folder written header-only (bf16 safetensors whose data is sparse zeros: real key names and
 * shapes, ~34 GB apparent, a few MB on disk; tokenizers from the tiny fixture). The image is meaningless; the time
 * per stage and the peak RSS (VmHWM) are real: this is the memory figure of a 512x512, 4-step generation.
 *
 * `--precision auto|bf16|fp32` and `--residency auto|streamed|resident|fp8` (the transformer's) go to the pipeline.
 * `--dense`: the transformer file holds real bytes (small random bf16 values, 23.8 GB written once; reuse it with
 * `--keep DIR`), so a streamed step reads it from the disk when it does not fit the page cache: the header-only file
 * reads as zeros without any disk I/O.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CLIP_L, FLUX_SCHNELL, FLUX_VAE, T5_XXL, FluxPipeline, clipTextArchitecture, diffusersTransformerArchitecture,
  diffusersVaeArchitecture, t5EncoderArchitecture, writeSparseSafetensors, type Architecture,
} from '@flux-ts/flux';
import { peakRssMiB, printTable, setup, writeResults } from './common.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TINY = join(ROOT, 'test', 'fixtures', 'pipeline', 'tiny-flux');

// The config.json files of black-forest-labs/FLUX.1-schnell (the fields the loaders read).
const CONFIGS = {
  transformer: {
    _class_name: 'FluxTransformer2DModel', attention_head_dim: 128, guidance_embeds: false, in_channels: 64, joint_attention_dim: 4096,
    num_attention_heads: 24, num_layers: 19, num_single_layers: 38, patch_size: 1, pooled_projection_dim: 768, axes_dims_rope: [16, 56, 56],
  },
  vae: {
    _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [128, 256, 512, 512], down_block_types: Array(4).fill('DownEncoderBlock2D'),
    up_block_types: Array(4).fill('UpDecoderBlock2D'), in_channels: 3, out_channels: 3, latent_channels: 16, layers_per_block: 2, norm_num_groups: 32,
    sample_size: 1024, scaling_factor: 0.3611, shift_factor: 0.1159, use_quant_conv: false, use_post_quant_conv: false,
  },
  text_encoder_2: {
    architectures: ['T5EncoderModel'], model_type: 't5', d_ff: 10240, d_kv: 64, d_model: 4096, feed_forward_proj: 'gated-gelu', num_heads: 64,
    num_layers: 24, relative_attention_max_distance: 128, relative_attention_num_buckets: 32, vocab_size: 32128, layer_norm_epsilon: 1e-6,
  },
  text_encoder: {
    architectures: ['CLIPTextModel'], model_type: 'clip_text_model', hidden_act: 'quick_gelu', hidden_size: 768, intermediate_size: 3072,
    max_position_embeddings: 77, num_attention_heads: 12, num_hidden_layers: 12, projection_dim: 768, vocab_size: 49408,
    bos_token_id: 0, eos_token_id: 2, pad_token_id: 1, layer_norm_eps: 1e-5,
  },
} as const;

const WEIGHT_FILES: Record<keyof typeof CONFIGS, { file: string; arch: () => Architecture }> = {
  transformer: { file: 'diffusion_pytorch_model.safetensors', arch: () => diffusersTransformerArchitecture(FLUX_SCHNELL) },
  vae: { file: 'diffusion_pytorch_model.safetensors', arch: () => diffusersVaeArchitecture(FLUX_VAE) },
  text_encoder_2: { file: 'model.safetensors', arch: () => t5EncoderArchitecture(T5_XXL) },
  text_encoder: { file: 'model.safetensors', arch: () => clipTextArchitecture(CLIP_L) },
};

/** Fills the data region of a (sparse) safetensors file with small random bf16 values, 64 MiB at a time. */
async function fillDense(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    const start = 8 + Number(head.readBigUInt64LE(0));
    const end = (await fh.stat()).size;
    const chunk = new Uint16Array(32 * 2 ** 20);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    let x = 12345;
    for (let i = 0; i < chunk.length; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      f[0] = ((x / 2 ** 32) * 2 - 1) * 0.05; // uniform in [-0.05, 0.05]: weights of plausible size, no NaN
      chunk[i] = u[0]! >>> 16;
    }
    const bytes = new Uint8Array(chunk.buffer);
    for (let at = start; at < end; at += bytes.byteLength) {
      const n = Math.min(bytes.byteLength, end - at);
      await fh.write(bytes, 0, n, at);
    }
  } finally {
    await fh.close();
  }
}

/** A header-only full-size FLUX.1 [schnell] diffusers folder (bf16 weights, data sparse). Returns its path. */
async function writeSparsePipeline(dir: string): Promise<number> {
  let apparent = 0;
  for (const [component, { file, arch }] of Object.entries(WEIGHT_FILES) as [keyof typeof CONFIGS, (typeof WEIGHT_FILES)[keyof typeof CONFIGS]][]) {
    mkdirSync(join(dir, component), { recursive: true });
    writeFileSync(join(dir, component, 'config.json'), JSON.stringify(CONFIGS[component]));
    const entries = [...arch().tensors].map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
    apparent += await writeSparseSafetensors(join(dir, component, file), entries);
  }
  for (const sub of ['tokenizer', 'tokenizer_2', 'scheduler']) cpSync(join(TINY, sub), join(dir, sub), { recursive: true });
  cpSync(join(TINY, 'model_index.json'), join(dir, 'model_index.json'));
  return apparent;
}

export async function run(argv: string[]): Promise<void> {
  const { values, backend } = await setup(argv, {
    'full-sparse': { type: 'boolean', default: false },
    size: { type: 'string' },
    steps: { type: 'string', default: '4' },
    reps: { type: 'string' },
    keep: { type: 'string' },
    precision: { type: 'string', default: 'auto' },
    residency: { type: 'string', default: 'auto' },
    dense: { type: 'boolean', default: false },
  });
  const full = Boolean(values['full-sparse']);
  const size = Number(values.size ?? (full ? 512 : 128));
  const steps = Number(values.steps);
  const reps = Number(values.reps ?? (full ? 1 : 2));
  const dir = full ? (values.keep as string | undefined) ?? mkdtempSync(join(tmpdir(), 'flux-sparse-pipeline-')) : TINY;
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  try {
    const denseMarker = join(dir, 'transformer', '.dense');
    if (full && !(values.dense && existsSync(denseMarker))) {
      const apparent = await writeSparsePipeline(dir);
      console.log(`wrote a header-only FLUX.1 [schnell] folder at ${dir} (${(apparent / 1e9).toFixed(1)} GB apparent)`);
      if (values.dense) {
        const t = performance.now();
        await fillDense(join(dir, 'transformer', WEIGHT_FILES.transformer.file));
        writeFileSync(denseMarker, '');
        console.log(`filled the transformer with random bf16 bytes (23.8 GB) in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      }
    } else if (values.dense) console.log(`reusing the dense transformer in ${dir}`);
    const pipe = FluxPipeline.load(dir, {
      precision: values.precision as 'auto' | 'bf16' | 'fp32',
      transformer: values.residency as 'auto' | 'streamed' | 'resident' | 'fp8',
    });
    console.log(`precision ${pipe.precision}, transformer residency ${values.residency}${values.dense ? ', dense transformer file' : ''}`);
    const rows: Record<string, string | number>[] = [];
    const entries: Record<string, unknown>[] = [];
    for (let i = 0; i < reps; i++) {
      const res = await pipe.generate({
        prompt: 'A photo of an astronaut riding a horse on Mars.', width: size, height: size, steps, seed: 42 + i,
        onStage: (stage, event, ms) => { if (full) console.log(`${stage} ${event}${ms === undefined ? '' : ` ${(ms / 1000).toFixed(1)} s`}, peak RSS ${peakRssMiB().toFixed(0)} MiB`); },
        onStep: full ? ({ step, total, stepMs }) => console.log(`  step ${step}/${total}: ${(stepMs / 1000).toFixed(1)} s`) : undefined,
      });
      const t = res.timings;
      const row = { run: i + 1, 'text ms': t.textMs, 'denoise ms': t.denoiseMs, 'decode ms': t.decodeMs, 'total ms': t.totalMs, 'peak RSS MiB': peakRssMiB() };
      rows.push(row);
      entries.push({
        backend: backend.name, precision: res.precision, residency: values.residency, dense: Boolean(values.dense),
        model: full ? (values.dense ? 'full-size-dense-transformer' : 'full-size-sparse') : 'tiny', width: size, height: size, steps, run: i + 1,
        text_ms: t.textMs, denoise_ms: t.denoiseMs, step_ms: t.stepMs, decode_ms: t.decodeMs, total_ms: t.totalMs, peak_rss_mib: Math.round(peakRssMiB()),
      });
    }
    printTable(rows);
    const name = full ? `pipeline-full-${values.dense ? 'dense' : 'sparse'}-${res0(entries)}` : 'pipeline';
    writeResults(name, entries, { backend: backend.name, device: backend.device, load_average_start: load, load_average_end: loadavg().map((x) => x.toFixed(2)).join(' ') });
  } finally {
    if (full && !values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** precision, residency and size of a run, for its results file name (pipeline-full-sparse-bf16-streamed-512.json). */
function res0(entries: Record<string, unknown>[]): string {
  const e = entries[0] ?? {};
  return `${String(e.precision)}-${String(e.residency)}-${String(e.width)}`;
}
