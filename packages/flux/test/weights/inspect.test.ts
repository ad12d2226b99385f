/**
 * `inspect` on header-only (sparse) checkpoints with the real FLUX.1 key names at full size: the data regions are
 * holes, so a 23.8 GB transformer costs a few KB of disk and reading it must not touch the data.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIP_L } from '../../src/clip/config.ts';
import { FLUX_DEV, FLUX_SCHNELL } from '../../src/transformer/config.ts';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';
import { T5_XXL } from '../../src/t5/config.ts';
import { formatInspectReport, inspectPath } from '../../src/weights/inspect.ts';
import {
  bflTransformerArchitecture,
  bflVaeArchitecture,
  clipTextArchitecture,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  type Architecture,
} from '../../src/weights/architectures.ts';
import { SafetensorsError, writeSparseSafetensors, type Dtype } from '../../src/weights/safetensors.ts';

type Entry = { name: string; dtype: Dtype; shape: number[] };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-inspect-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function entries(a: Architecture | Map<string, number[]>, dtype: (name: string, shape: number[]) => Dtype = () => 'BF16', prefix = ''): Entry[] {
  const t = a instanceof Map ? a : a.tensors;
  return [...t].map(([name, shape]) => ({ name: prefix + name, dtype: dtype(name, shape), shape }));
}

async function sparse(path: string, list: Entry[]): Promise<string> {
  await writeSparseSafetensors(path, list, { format: 'pt' });
  return path;
}

/** A diffusers-style sharded checkpoint: `<base>-0000i-of-0000n.safetensors` + `<base>.safetensors.index.json`. */
async function sharded(folder: string, base: string, list: Entry[], n: number, config?: unknown): Promise<string> {
  await mkdir(folder, { recursive: true });
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(list.length / n);
  for (let i = 0; i < n; i++) {
    const file = `${base}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    const part = list.slice(i * per, (i + 1) * per);
    for (const e of part) weightMap[e.name] = file;
    await sparse(join(folder, file), part);
  }
  await writeFile(join(folder, `${base}.safetensors.index.json`), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  if (config) await writeFile(join(folder, 'config.json'), JSON.stringify(config));
  return folder;
}

// The config.json files of black-forest-labs/FLUX.1-schnell (the fields the architecture depends on).
const TRANSFORMER_CONFIG = {
  _class_name: 'FluxTransformer2DModel', attention_head_dim: 128, guidance_embeds: false, in_channels: 64, joint_attention_dim: 4096,
  num_attention_heads: 24, num_layers: 19, num_single_layers: 38, patch_size: 1, pooled_projection_dim: 768, axes_dims_rope: [16, 56, 56],
};
const VAE_CONFIG = {
  _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [128, 256, 512, 512], down_block_types: Array(4).fill('DownEncoderBlock2D'),
  up_block_types: Array(4).fill('UpDecoderBlock2D'), in_channels: 3, out_channels: 3, latent_channels: 16, layers_per_block: 2, norm_num_groups: 32,
  sample_size: 1024, scaling_factor: 0.3611, shift_factor: 0.1159, use_quant_conv: false, use_post_quant_conv: false,
};
const T5_CONFIG = {
  architectures: ['T5EncoderModel'], model_type: 't5', d_ff: 10240, d_kv: 64, d_model: 4096, feed_forward_proj: 'gated-gelu', num_heads: 64,
  num_layers: 24, relative_attention_max_distance: 128, relative_attention_num_buckets: 32, vocab_size: 32128,
};
const CLIP_CONFIG = {
  architectures: ['CLIPTextModel'], model_type: 'clip_text_model', hidden_act: 'quick_gelu', hidden_size: 768, intermediate_size: 3072,
  max_position_embeddings: 77, num_attention_heads: 12, num_hidden_layers: 12, projection_dim: 768, vocab_size: 49408,
  bos_token_id: 0, eos_token_id: 2, pad_token_id: 1,
};

function expectClean(r: { missing: string[]; unexpected: string[]; mismatched: unknown[] }) {
  expect(r.missing).toEqual([]);
  expect(r.unexpected).toEqual([]);
  expect(r.mismatched).toEqual([]);
}

describe('inspect: single files', () => {
  it('full-size bf16 flux1-schnell.safetensors (23.8 GB apparent, sparse): headers only', async () => {
    const path = await sparse(join(dir, 'flux1-schnell.safetensors'), entries(bflTransformerArchitecture(FLUX_SCHNELL)));
    const size = (await stat(path)).size;
    expect(size).toBeGreaterThan(23.7e9);
    const t0 = performance.now();
    const r = await inspectPath(path);
    const ms = performance.now() - t0;
    console.log(`inspect ${path} (${(size / 1e9).toFixed(2)} GB apparent): ${ms.toFixed(1)} ms`);
    expect(r).toMatchObject({ format: 'bfl-transformer', variant: 'schnell', tensors: 776, parameters: 11_891_178_560, dtypes: { BF16: 776 } });
    expect(r.expectedParameters).toBe(11_891_178_560);
    expect(r.bytes).toBe(2 * 11_891_178_560);
    expect(r.prefix).toBeUndefined();
    expectClean(r);
    const text = formatInspectReport(r);
    expect(text).toMatch(/format\s+bfl-transformer \(schnell\)/);
    expect(text).toMatch(/parameters\s+11\.89 B/);
    expect(text).toMatch(/^ok:/m);
  });

  it('flux1-dev (guidance_in means dev)', async () => {
    const path = await sparse(join(dir, 'flux1-dev.safetensors'), entries(bflTransformerArchitecture(FLUX_DEV)));
    const r = await inspectPath(path);
    expect(r).toMatchObject({ format: 'bfl-transformer', variant: 'dev', tensors: 780, parameters: 11_901_408_320 });
    expectClean(r);
  });

  it('strips the model.diffusion_model. prefix; fp8 (F8_E4M3) weights are the same format', async () => {
    const fp8 = (name: string, shape: number[]) => (name.endsWith('.weight') && shape.length === 2 ? 'F8_E4M3' : 'BF16');
    const path = await sparse(join(dir, 'flux1-schnell-fp8.safetensors'), entries(bflTransformerArchitecture(FLUX_SCHNELL), fp8, 'model.diffusion_model.'));
    const r = await inspectPath(path);
    expect(r).toMatchObject({ format: 'bfl-transformer', variant: 'schnell', prefix: 'model.diffusion_model.', tensors: 776, parameters: 11_891_178_560 });
    // 2-D weights: img_in, txt_in, time_in x2, vector_in x2; 5 linears per stream per double block; 3 per single; 2 final
    const f8 = 6 + 19 * 2 * 5 + 38 * 3 + 2;
    expect(r.dtypes).toEqual({ F8_E4M3: f8, BF16: 776 - f8 });
    expectClean(r);
    expect(formatInspectReport(r)).toMatch(/prefix\s+model\.diffusion_model\./);
  });

  it('reports a removed key, an added key and a changed shape', async () => {
    const t = new Map(bflTransformerArchitecture(FLUX_SCHNELL).tensors);
    t.delete('double_blocks.7.img_attn.proj.weight');
    t.set('double_blocks.19.img_attn.proj.weight', [3072, 3072]);
    t.set('final_layer.linear.weight', [128, 3072]);
    const r = await inspectPath(await sparse(join(dir, 'broken.safetensors'), entries(t)));
    expect(r.format).toBe('bfl-transformer');
    expect(r.missing).toEqual(['double_blocks.7.img_attn.proj.weight']);
    expect(r.unexpected).toEqual(['double_blocks.19.img_attn.proj.weight']);
    expect(r.mismatched).toEqual([{ key: 'final_layer.linear.weight', expected: [64, 3072], actual: [128, 3072] }]);
    const text = formatInspectReport(r);
    expect(text).toContain('final_layer.linear.weight: expected [64, 3072], got [128, 3072]');
    expect(text).toMatch(/3 problem\(s\): 1 missing, 1 unexpected, 1 mismatched/);
  });

  it('lists at most 10 of each problem in the text output', async () => {
    const t = new Map(bflTransformerArchitecture(FLUX_SCHNELL).tensors);
    for (const k of [...t.keys()].filter((k) => k.startsWith('single_blocks.37.') || k.startsWith('single_blocks.36.'))) t.delete(k);
    const r = await inspectPath(await sparse(join(dir, 'short.safetensors'), entries(t)));
    expect(r.missing).toHaveLength(16); // 8 tensors per single block
    const text = formatInspectReport(r);
    expect(text).toMatch(/missing\s+16/);
    expect(text).toContain('… and 6 more');
  });

  it('BFL ae.safetensors (f32)', async () => {
    const r = await inspectPath(await sparse(join(dir, 'ae.safetensors'), entries(bflVaeArchitecture(FLUX_VAE), () => 'F32')));
    expect(r).toMatchObject({ format: 'bfl-vae', tensors: 244, parameters: 83_819_683, bytes: 4 * 83_819_683, dtypes: { F32: 244 } });
    expect(r.variant).toBeUndefined();
    expectClean(r);
  });

  it('an unknown checkpoint is not an error: format unknown, with counts', async () => {
    const r = await inspectPath(await sparse(join(dir, 'other.safetensors'), [
      { name: 'conv.weight', dtype: 'F16', shape: [8, 3, 3, 3] },
      { name: 'fc.weight', dtype: 'F32', shape: [10, 8] },
    ]));
    expect(r).toMatchObject({ format: 'unknown', tensors: 2, parameters: 216 + 80, dtypes: { F16: 1, F32: 1 }, missing: [], unexpected: [], mismatched: [] });
    expect(formatInspectReport(r)).toMatch(/unknown format/);
  });

  it('a malformed file is a SafetensorsError naming the file', async () => {
    const path = join(dir, 'garbage.safetensors');
    await writeFile(path, Buffer.from('this is not a safetensors file at all'));
    await expect(inspectPath(path)).rejects.toThrow(SafetensorsError);
    await expect(inspectPath(path)).rejects.toThrow(path);
    await expect(inspectPath(join(dir, 'nope.safetensors'))).rejects.toThrow(/nope\.safetensors: not found/);
  });
});

describe('inspect: sharded checkpoints and folders', () => {
  let pipeline: string;
  beforeAll(async () => {
    pipeline = join(dir, 'FLUX.1-schnell');
    await sharded(join(pipeline, 'transformer'), 'diffusion_pytorch_model', entries(diffusersTransformerArchitecture(FLUX_SCHNELL)), 3, TRANSFORMER_CONFIG);
    await mkdir(join(pipeline, 'vae'), { recursive: true });
    await sparse(join(pipeline, 'vae', 'diffusion_pytorch_model.safetensors'), entries(diffusersVaeArchitecture(FLUX_VAE), () => 'F32'));
    await writeFile(join(pipeline, 'vae', 'config.json'), JSON.stringify(VAE_CONFIG));
    await sharded(join(pipeline, 'text_encoder_2'), 'model', entries(t5EncoderArchitecture(T5_XXL)), 2, T5_CONFIG);
    await mkdir(join(pipeline, 'text_encoder'), { recursive: true });
    // FLUX.1's CLIP file was saved by transformers 4.x: every key carries `text_model.`
    await sparse(join(pipeline, 'text_encoder', 'model.safetensors'), entries(clipTextArchitecture(CLIP_L), () => 'BF16', 'text_model.'));
    await writeFile(join(pipeline, 'text_encoder', 'config.json'), JSON.stringify(CLIP_CONFIG));
    for (const [sub, files] of [['tokenizer', ['vocab.json', 'merges.txt']], ['tokenizer_2', ['spiece.model']], ['scheduler', ['scheduler_config.json']]] as const) {
      await mkdir(join(pipeline, sub), { recursive: true });
      for (const f of files) await writeFile(join(pipeline, sub, f), '{}');
    }
    await writeFile(join(pipeline, 'model_index.json'), JSON.stringify({
      _class_name: 'FluxPipeline', _diffusers_version: '0.30.0.dev0',
      scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
      text_encoder_2: ['transformers', 'T5EncoderModel'], tokenizer: ['transformers', 'CLIPTokenizer'],
      tokenizer_2: ['transformers', 'T5TokenizerFast'], transformer: ['diffusers', 'FluxTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'],
    }));
  });

  it('diffusers transformer: 3 shards + index + config.json (folder, index or shard-less path)', async () => {
    const folder = join(pipeline, 'transformer');
    for (const p of [folder, join(folder, 'diffusion_pytorch_model.safetensors.index.json')]) {
      const r = await inspectPath(p);
      expect(r).toMatchObject({ format: 'diffusers-transformer', variant: 'schnell', tensors: 1156, parameters: 11_891_178_560 });
      expect(r.files).toHaveLength(3);
      expect(r.expectedFrom).toBe(join(folder, 'config.json'));
      expectClean(r);
    }
  });

  it('diffusers vae with config.json', async () => {
    const r = await inspectPath(join(pipeline, 'vae'));
    expect(r).toMatchObject({ format: 'diffusers-vae', tensors: 244, parameters: 83_819_683 });
    expect(r.expectedFrom).toMatch(/vae[/\\]config\.json$/);
    expectClean(r);
  });

  it('T5: 2 shards + index', async () => {
    const r = await inspectPath(join(pipeline, 'text_encoder_2', 'model.safetensors.index.json'));
    expect(r).toMatchObject({ format: 't5-encoder', tensors: 219, parameters: 4_762_310_656, bytes: 2 * 4_762_310_656 });
    expect(r.files).toHaveLength(2);
    expectClean(r);
  });

  it('CLIP with the transformers 4.x text_model. prefix', async () => {
    const r = await inspectPath(join(pipeline, 'text_encoder', 'model.safetensors'));
    expect(r).toMatchObject({ format: 'clip-text', prefix: 'text_model.', tensors: 196, parameters: 123_060_480 });
    expectClean(r);
  });

  it('a whole diffusers pipeline folder', async () => {
    const r = await inspectPath(pipeline);
    expect(r.format).toBe('diffusers-pipeline');
    expect(Object.keys(r.components!).sort()).toEqual(['text_encoder', 'text_encoder_2', 'transformer', 'vae']);
    expect(r.components!.transformer).toMatchObject({ format: 'diffusers-transformer', variant: 'schnell' });
    expect(r.components!.vae.format).toBe('diffusers-vae');
    expect(r.components!.text_encoder.format).toBe('clip-text');
    expect(r.components!.text_encoder_2.format).toBe('t5-encoder');
    expect(r.parameters).toBe(11_891_178_560 + 83_819_683 + 123_060_480 + 4_762_310_656);
    expect(r.tensors).toBe(1156 + 244 + 196 + 219);
    expect(r.dtypes).toEqual({ BF16: 1156 + 196 + 219, F32: 244 });
    expectClean(r);
    expect(r.notes).toBeUndefined();
    const text = formatInspectReport(r);
    expect(text).toMatch(/format\s+diffusers-pipeline/);
    expect(text).toMatch(/transformer\/\n\s+format\s+diffusers-transformer \(schnell\)/);
    // the JSON form is one plain object
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('a pipeline missing a component reports it; component problems carry the component name', async () => {
    const p = join(dir, 'partial');
    await mkdir(join(p, 'vae'), { recursive: true });
    const t = new Map(diffusersVaeArchitecture(FLUX_VAE).tensors);
    t.delete('decoder.conv_out.bias');
    await sparse(join(p, 'vae', 'diffusion_pytorch_model.safetensors'), entries(t));
    await writeFile(join(p, 'model_index.json'), JSON.stringify({ _class_name: 'FluxPipeline', transformer: ['diffusers', 'FluxTransformer2DModel'], vae: ['diffusers', 'AutoencoderKL'] }));
    const r = await inspectPath(p);
    expect(r.missing).toEqual(['transformer/ (FluxTransformer2DModel weights)', 'vae/decoder.conv_out.bias']);
    expect(r.components!.vae.missing).toEqual(['decoder.conv_out.bias']);
  });

  it('uses the dims of config.json next to the weights', async () => {
    // a tiny FLUX-shaped transformer: hidden 32 = 2 heads x 16, axes 4+6+6, 1 double + 1 single block
    const tiny = { ...TRANSFORMER_CONFIG, attention_head_dim: 16, num_attention_heads: 2, num_layers: 1, num_single_layers: 1, axes_dims_rope: [4, 6, 6], in_channels: 8, joint_attention_dim: 24, pooled_projection_dim: 12 };
    const params = { ...FLUX_SCHNELL, hiddenSize: 32, numHeads: 2, depth: 1, depthSingleBlocks: 1, axesDim: [4, 6, 6], inChannels: 8, outChannels: 8, contextInDim: 24, vecInDim: 12 };
    const list = entries(diffusersTransformerArchitecture(params), () => 'F32');
    const withConfig = await sharded(join(dir, 'tiny', 'transformer'), 'diffusion_pytorch_model', list, 1, tiny);
    const r = await inspectPath(withConfig);
    expect(r).toMatchObject({ format: 'diffusers-transformer', variant: 'schnell', tensors: list.length });
    expect(r.expectedParameters).toBe(r.parameters);
    expectClean(r);
    // the same weights without a config.json are compared with full-size FLUX.1
    const bare = join(dir, 'tiny-bare.safetensors');
    await sparse(bare, list);
    const b = await inspectPath(bare);
    expect(b.format).toBe('diffusers-transformer');
    expect(b.missing.length).toBeGreaterThan(1000);
    expect(b.mismatched.find((m) => m.key === 'x_embedder.weight')).toEqual({ key: 'x_embedder.weight', expected: [3072, 64], actual: [32, 8] });
  });

  it('a malformed config.json or model_index.json is an error naming the file', async () => {
    const p = join(dir, 'badcfg');
    await mkdir(p, { recursive: true });
    await sparse(join(p, 'diffusion_pytorch_model.safetensors'), entries(diffusersVaeArchitecture(FLUX_VAE)));
    await writeFile(join(p, 'config.json'), '{"block_out_channels": [128, ');
    await expect(inspectPath(p)).rejects.toThrow(/badcfg[/\\]config\.json: not valid JSON/);
    await writeFile(join(p, 'config.json'), JSON.stringify({ ...VAE_CONFIG, layers_per_block: -2 }));
    await expect(inspectPath(p)).rejects.toThrow(/config\.json: "layers_per_block" must be a positive integer/);
    await writeFile(join(p, 'model_index.json'), 'nope');
    await expect(inspectPath(p)).rejects.toThrow(/model_index\.json: not valid JSON/);
  });

  it('shards without their index, or an empty folder, are errors that say what is missing', async () => {
    const p = join(dir, 'orphans');
    await mkdir(p, { recursive: true });
    await expect(inspectPath(p)).rejects.toThrow(/orphans: no \.safetensors files/);
    await sparse(join(p, 'model-00001-of-00002.safetensors'), entries(clipTextArchitecture(CLIP_L)));
    await expect(inspectPath(p)).rejects.toThrow(/holds shard files \(model-00001-of-00002\.safetensors\) but no \*\.safetensors\.index\.json/);
  });

  it('a folder of several single files lists each', async () => {
    const p = join(dir, 'mixed');
    await mkdir(p, { recursive: true });
    await sparse(join(p, 'flux1-dev.safetensors'), entries(bflTransformerArchitecture(FLUX_DEV)));
    await sparse(join(p, 'ae.safetensors'), entries(bflVaeArchitecture(FLUX_VAE)));
    const r = await inspectPath(p);
    expect(r.format).toBe('folder');
    expect(r.components!['flux1-dev.safetensors']).toMatchObject({ format: 'bfl-transformer', variant: 'dev' });
    expect(r.components!['ae.safetensors'].format).toBe('bfl-vae');
    expectClean(r);
  });
});
