/**
 * Expected checkpoint tables (key -> shape) of each FLUX.1 component and format, generated from the typed dims.
 *
 * Every table is built by loops over blocks and levels, never typed out; test/architectures.test.ts checks each
 * one against the state_dict of the real reference classes at full size (test/fixtures/keys/*.json, made by
 * test/reference/gen_keys.py on torch's meta device). Linear weights are [out, in], convs [out, in, kh, kw].
 */
import {
  blockOutChannels,
  headDim,
  mlpHiddenDim,
  type AutoEncoderParams,
  type ClipTextConfig,
  type FluxParams,
  type T5Config,
} from '../transformer/config.ts';

export type ShapeTable = Map<string, number[]>;

/** The checkpoint formats `detectFormat` tells apart. */
export type WeightsFormat =
  | 'bfl-transformer'
  | 'diffusers-transformer'
  | 'bfl-vae'
  | 'diffusers-vae'
  | 't5-encoder'
  | 'clip-text';

export interface Architecture {
  format: WeightsFormat;
  /** Every tensor a complete checkpoint holds. */
  tensors: ShapeTable;
  /** Tensors a file MAY also hold (tied copies, legacy buffers): neither missing nor unexpected when present. */
  optional: Map<string, { shape: number[]; note: string }>;
  /** Element count of `tensors`. */
  parameters: number;
}

/** Small builder: the helpers mirror the torch modules that own the parameters. */
class Table {
  readonly t: ShapeTable = new Map();
  add(key: string, shape: number[]): void {
    this.t.set(key, shape);
  }
  /** nn.Linear(i, o, bias): weight [o, i], bias [o]. */
  linear(name: string, i: number, o: number, bias = true): void {
    this.add(`${name}.weight`, [o, i]);
    if (bias) this.add(`${name}.bias`, [o]);
  }
  /** nn.Conv2d(i, o, k): weight [o, i, k, k], bias [o]. */
  conv(name: string, i: number, o: number, k: number): void {
    this.add(`${name}.weight`, [o, i, k, k]);
    this.add(`${name}.bias`, [o]);
  }
  /** Affine GroupNorm / LayerNorm: weight [n], bias [n]. */
  norm(name: string, n: number): void {
    this.add(`${name}.weight`, [n]);
    this.add(`${name}.bias`, [n]);
  }
}

export function countParameters(tensors: ReadonlyMap<string, readonly number[]>): number {
  let n = 0;
  for (const shape of tensors.values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

type Optional = [key: string, shape: number[], note: string];

function architecture(format: WeightsFormat, t: Table, optional: Optional[] = []): Architecture {
  const opt = new Map(optional.map(([key, shape, note]) => [key, { shape, note }]));
  return { format, tensors: t.t, optional: opt, parameters: countParameters(t.t) };
}

// ---------------------------------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------------------------------

/** Timestep embedding width fed to time_in / guidance_in (BFL model.py: `timestep_embedding(t, 256)`). */
const TIME_EMBED_DIM = 256;

/** BFL `Flux` (black-forest-labs/flux src/flux/model.py, modules/layers.py): `flux1-schnell.safetensors` keys. */
export function bflTransformerArchitecture(p: FluxParams): Architecture {
  const h = p.hiddenSize;
  const d = headDim(p);
  const mlp = mlpHiddenDim(p);
  const t = new Table();
  const mlpEmbedder = (name: string, i: number) => {
    t.linear(`${name}.in_layer`, i, h);
    t.linear(`${name}.out_layer`, h, h);
  };
  t.linear('img_in', p.inChannels, h);
  mlpEmbedder('time_in', TIME_EMBED_DIM);
  if (p.guidanceEmbed) mlpEmbedder('guidance_in', TIME_EMBED_DIM);
  mlpEmbedder('vector_in', p.vecInDim);
  t.linear('txt_in', p.contextInDim, h);
  for (let i = 0; i < p.depth; i++) {
    const b = `double_blocks.${i}`;
    for (const s of ['img', 'txt']) {
      t.linear(`${b}.${s}_mod.lin`, h, 6 * h); // Modulation(double=True): shift, scale, gate x2
      t.linear(`${b}.${s}_attn.qkv`, h, 3 * h, p.qkvBias);
      t.add(`${b}.${s}_attn.norm.query_norm.scale`, [d]);
      t.add(`${b}.${s}_attn.norm.key_norm.scale`, [d]);
      t.linear(`${b}.${s}_attn.proj`, h, h);
      t.linear(`${b}.${s}_mlp.0`, h, mlp);
      t.linear(`${b}.${s}_mlp.2`, mlp, h);
    }
  }
  for (let i = 0; i < p.depthSingleBlocks; i++) {
    const b = `single_blocks.${i}`;
    t.linear(`${b}.linear1`, h, 3 * h + mlp); // [qkv | mlp]
    t.linear(`${b}.linear2`, h + mlp, h); // cat(attn, mlp)
    t.add(`${b}.norm.query_norm.scale`, [d]);
    t.add(`${b}.norm.key_norm.scale`, [d]);
    t.linear(`${b}.modulation.lin`, h, 3 * h);
  }
  t.linear('final_layer.linear', h, p.outChannels); // patch size 1
  t.linear('final_layer.adaLN_modulation.1', h, 2 * h);
  return architecture('bfl-transformer', t);
}

/** diffusers `FluxTransformer2DModel` (models/transformers/transformer_flux.py): `transformer/` keys. */
export function diffusersTransformerArchitecture(p: FluxParams): Architecture {
  const h = p.hiddenSize;
  const d = headDim(p);
  const mlp = mlpHiddenDim(p);
  const t = new Table();
  const embedder = (name: string, i: number) => {
    t.linear(`time_text_embed.${name}.linear_1`, i, h);
    t.linear(`time_text_embed.${name}.linear_2`, h, h);
  };
  embedder('timestep_embedder', TIME_EMBED_DIM);
  if (p.guidanceEmbed) embedder('guidance_embedder', TIME_EMBED_DIM);
  embedder('text_embedder', p.vecInDim);
  t.linear('context_embedder', p.contextInDim, h);
  t.linear('x_embedder', p.inChannels, h);
  for (let i = 0; i < p.depth; i++) {
    const b = `transformer_blocks.${i}`;
    t.linear(`${b}.norm1.linear`, h, 6 * h);
    t.linear(`${b}.norm1_context.linear`, h, 6 * h);
    for (const n of ['norm_q', 'norm_k']) t.add(`${b}.attn.${n}.weight`, [d]);
    for (const n of ['to_q', 'to_k', 'to_v']) t.linear(`${b}.attn.${n}`, h, h, p.qkvBias);
    t.linear(`${b}.attn.to_out.0`, h, h);
    for (const n of ['norm_added_q', 'norm_added_k']) t.add(`${b}.attn.${n}.weight`, [d]);
    for (const n of ['add_q_proj', 'add_k_proj', 'add_v_proj']) t.linear(`${b}.attn.${n}`, h, h, p.qkvBias);
    t.linear(`${b}.attn.to_add_out`, h, h);
    for (const ff of ['ff', 'ff_context']) {
      t.linear(`${b}.${ff}.net.0.proj`, h, mlp);
      t.linear(`${b}.${ff}.net.2`, mlp, h);
    }
  }
  for (let i = 0; i < p.depthSingleBlocks; i++) {
    const b = `single_transformer_blocks.${i}`;
    t.linear(`${b}.norm.linear`, h, 3 * h);
    t.linear(`${b}.proj_mlp`, h, mlp);
    t.linear(`${b}.proj_out`, h + mlp, h);
    for (const n of ['norm_q', 'norm_k']) t.add(`${b}.attn.${n}.weight`, [d]);
    for (const n of ['to_q', 'to_k', 'to_v']) t.linear(`${b}.attn.${n}`, h, h, p.qkvBias);
  }
  t.linear('norm_out.linear', h, 2 * h); // (scale, shift): BFL's rows swapped
  t.linear('proj_out', h, p.outChannels);
  return architecture('diffusers-transformer', t);
}

// ---------------------------------------------------------------------------------------------------------------------
// Autoencoder
// ---------------------------------------------------------------------------------------------------------------------

/** BFL `AutoEncoder` (src/flux/modules/autoencoder.py): `ae.safetensors` keys. */
export function bflVaeArchitecture(p: AutoEncoderParams): Architecture {
  const ch = blockOutChannels(p);
  const top = ch[ch.length - 1];
  const t = new Table();
  const resnet = (name: string, i: number, o: number) => {
    t.norm(`${name}.norm1`, i);
    t.conv(`${name}.conv1`, i, o, 3);
    t.norm(`${name}.norm2`, o);
    t.conv(`${name}.conv2`, o, o, 3);
    if (i !== o) t.conv(`${name}.nin_shortcut`, i, o, 1);
  };
  const mid = (name: string) => {
    resnet(`${name}.mid.block_1`, top, top);
    t.norm(`${name}.mid.attn_1.norm`, top);
    for (const q of ['q', 'k', 'v', 'proj_out']) t.conv(`${name}.mid.attn_1.${q}`, top, top, 1);
    resnet(`${name}.mid.block_2`, top, top);
  };

  t.conv('encoder.conv_in', p.inChannels, ch[0], 3);
  let prev = ch[0];
  ch.forEach((o, level) => {
    for (let j = 0; j < p.numResBlocks; j++) resnet(`encoder.down.${level}.block.${j}`, j === 0 ? prev : o, o);
    prev = o;
    if (level !== ch.length - 1) t.conv(`encoder.down.${level}.downsample.conv`, o, o, 3);
  });
  mid('encoder');
  t.norm('encoder.norm_out', top);
  t.conv('encoder.conv_out', top, 2 * p.zChannels, 3); // mean | logvar

  t.conv('decoder.conv_in', p.zChannels, top, 3);
  mid('decoder');
  prev = top;
  for (let level = ch.length - 1; level >= 0; level--) {
    const o = ch[level];
    for (let j = 0; j < p.numResBlocks + 1; j++) resnet(`decoder.up.${level}.block.${j}`, j === 0 ? prev : o, o);
    prev = o;
    if (level !== 0) t.conv(`decoder.up.${level}.upsample.conv`, o, o, 3);
  }
  t.norm('decoder.norm_out', ch[0]);
  t.conv('decoder.conv_out', ch[0], p.outCh, 3);
  return architecture('bfl-vae', t);
}

/** diffusers `AutoencoderKL` (models/autoencoders/autoencoder_kl.py, vae.py): `vae/` keys. */
export function diffusersVaeArchitecture(p: AutoEncoderParams): Architecture {
  const ch = blockOutChannels(p);
  const top = ch[ch.length - 1];
  const t = new Table();
  const resnet = (name: string, i: number, o: number) => {
    t.norm(`${name}.norm1`, i);
    t.conv(`${name}.conv1`, i, o, 3);
    t.norm(`${name}.norm2`, o);
    t.conv(`${name}.conv2`, o, o, 3);
    if (i !== o) t.conv(`${name}.conv_shortcut`, i, o, 1);
  };
  const mid = (name: string) => {
    t.norm(`${name}.mid_block.attentions.0.group_norm`, top);
    for (const q of ['to_q', 'to_k', 'to_v', 'to_out.0']) t.linear(`${name}.mid_block.attentions.0.${q}`, top, top);
    resnet(`${name}.mid_block.resnets.0`, top, top);
    resnet(`${name}.mid_block.resnets.1`, top, top);
  };

  t.conv('encoder.conv_in', p.inChannels, ch[0], 3);
  let prev = ch[0];
  ch.forEach((o, i) => {
    for (let j = 0; j < p.numResBlocks; j++) resnet(`encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? prev : o, o);
    prev = o;
    if (i !== ch.length - 1) t.conv(`encoder.down_blocks.${i}.downsamplers.0.conv`, o, o, 3);
  });
  mid('encoder');
  t.norm('encoder.conv_norm_out', top);
  t.conv('encoder.conv_out', top, 2 * p.zChannels, 3);

  t.conv('decoder.conv_in', p.zChannels, top, 3);
  prev = top;
  // up_blocks.{i} is BFL's up.{L-1-i}: diffusers orders decoder levels from the latent side.
  for (let i = 0; i < ch.length; i++) {
    const o = ch[ch.length - 1 - i];
    for (let j = 0; j < p.numResBlocks + 1; j++) resnet(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? prev : o, o);
    prev = o;
    if (i !== ch.length - 1) t.conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, o, o, 3);
  }
  mid('decoder');
  t.norm('decoder.conv_norm_out', ch[0]);
  t.conv('decoder.conv_out', ch[0], p.outCh, 3);
  if (p.useQuantConv) t.conv('quant_conv', 2 * p.zChannels, 2 * p.zChannels, 1);
  if (p.usePostQuantConv) t.conv('post_quant_conv', p.zChannels, p.zChannels, 1);
  return architecture('diffusers-vae', t);
}

// ---------------------------------------------------------------------------------------------------------------------
// Text encoders
// ---------------------------------------------------------------------------------------------------------------------

/**
 * transformers `T5EncoderModel` as saved (`text_encoder_2/`): `encoder.embed_tokens.weight` is a tied copy of
 * `shared.weight` that save_pretrained leaves out; a file may still hold it.
 */
export function t5EncoderArchitecture(c: T5Config): Architecture {
  const inner = c.numHeads * c.dKv;
  const t = new Table();
  t.add('shared.weight', [c.vocabSize, c.dModel]);
  for (let i = 0; i < c.numLayers; i++) {
    const b = `encoder.block.${i}.layer`;
    for (const n of ['q', 'k', 'v']) t.linear(`${b}.0.SelfAttention.${n}`, c.dModel, inner, false);
    t.linear(`${b}.0.SelfAttention.o`, inner, c.dModel, false);
    // Only layer 0 owns the relative position bias; every layer reuses it.
    if (i === 0) t.add(`${b}.0.SelfAttention.relative_attention_bias.weight`, [c.relativeAttentionNumBuckets, c.numHeads]);
    t.add(`${b}.0.layer_norm.weight`, [c.dModel]);
    if (c.isGatedAct) {
      t.linear(`${b}.1.DenseReluDense.wi_0`, c.dModel, c.dFf, false);
      t.linear(`${b}.1.DenseReluDense.wi_1`, c.dModel, c.dFf, false);
    } else {
      t.linear(`${b}.1.DenseReluDense.wi`, c.dModel, c.dFf, false);
    }
    t.linear(`${b}.1.DenseReluDense.wo`, c.dFf, c.dModel, false);
    t.add(`${b}.1.layer_norm.weight`, [c.dModel]);
  }
  t.add('encoder.final_layer_norm.weight', [c.dModel]);
  return architecture('t5-encoder', t, [['encoder.embed_tokens.weight', [c.vocabSize, c.dModel], 'tied copy of shared.weight']]);
}

/**
 * transformers `CLIPTextModel` (`text_encoder/`). NOTE: keys are without the `text_model.` prefix that files saved
 * by transformers 4.x (FLUX.1's among them) carry; transformers 5 saves them without it. `detectFormat` strips it.
 */
export function clipTextArchitecture(c: ClipTextConfig): Architecture {
  const h = c.hiddenSize;
  const t = new Table();
  t.add('embeddings.token_embedding.weight', [c.vocabSize, h]);
  t.add('embeddings.position_embedding.weight', [c.maxPositionEmbeddings, h]);
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const b = `encoder.layers.${i}`;
    for (const n of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) t.linear(`${b}.self_attn.${n}`, h, h);
    t.norm(`${b}.layer_norm1`, h);
    t.linear(`${b}.mlp.fc1`, h, c.intermediateSize);
    t.linear(`${b}.mlp.fc2`, c.intermediateSize, h);
    t.norm(`${b}.layer_norm2`, h);
  }
  t.norm('final_layer_norm', h);
  return architecture('clip-text', t, [
    ['embeddings.position_ids', [1, c.maxPositionEmbeddings], 'buffer saved by transformers < 4.31'],
  ]);
}
