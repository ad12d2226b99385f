/**
 * BFL Flux (src/flux/model.py): the FLUX.1 MMDiT. Module fields are BFL's key names; `fluxParamSpec` is the
 * transformer's one key table. Modules are built per forward from CheckpointWeights, one at a time, so the same
 * forward serves resident weights and weights streamed per block (transformer/load.ts opens them).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError, type FlowForwardOptions, type FlowModel } from '@flux-ts/core';
import { headDim, validateFluxParams, type FluxParams } from './config.ts';
import type { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { linearSpec, prefixed, type ParamSpec, type Weights } from '../weights/spec.ts';
import { DoubleStreamBlock, type BlockDims } from './double-stream-block.ts';
import { EmbedND } from './embed-nd.ts';
import { LastLayer } from './last-layer.ts';
import { MLPEmbedder } from './mlp-embedder.ts';
import { linearFrom, timestepEmbedding, type Rope } from './ops.ts';
import { SingleStreamBlock } from './single-stream-block.ts';

export type { FluxParams } from './config.ts';

/** Width of the sinusoidal time / guidance embedding (model.py: `timestep_embedding(t, 256)`). */
export const TIME_EMBED_DIM = 256;

/** The FlowModel forward inputs (core's FlowModelInputs), named as BFL's `Flux.forward`. */
export interface FluxInputs {
  /** packed latent tokens [B, L_img, in_channels] */
  img: tf.Tensor;
  /** [B, L_img, 3], or [L_img, 3] for the whole batch */
  img_ids: tf.Tensor;
  /** T5 states [B, L_txt, context_in_dim] */
  txt: tf.Tensor;
  /** [B, L_txt, 3], or [L_txt, 3] for the whole batch */
  txt_ids: tf.Tensor;
  /** t in [0, 1], [B] */
  timesteps: tf.Tensor;
  /** CLIP pooled [B, vec_in_dim] */
  y: tf.Tensor;
  /** [B]; required by guidance-distilled models (dev), ignored otherwise */
  guidance?: tf.Tensor;
}

export interface FluxOptions {
  /**
   * Heads per attention chunk; bounds the [B, chunk, L, L] score memory, same result. Default 'auto': as many heads
   * as fit `attentionBudgetBytes` (autoHeadChunk).
   */
  attentionHeadChunk?: number | 'auto';
  /** Memory allowed for the attention scores of one chunk when the chunk is 'auto' (default 512 MiB). */
  attentionBudgetBytes?: number;
  /**
   * Called after each module's weights are fetched (`phase` 'loaded') and after it ran, before its weights are
   * released (`phase` 'ran'): the points of highest memory between modules (used by the memory tests).
   */
  onModule?: (prefix: string, phase: 'loaded' | 'ran') => void;
}

/** Default memory for one attention chunk's scores: 512 MiB. */
export const DEFAULT_ATTENTION_BUDGET_BYTES = 512 * 2 ** 20;

/**
 * Heads per attention chunk so that one chunk's score tensors fit `budgetBytes`: per head and batch entry the scores,
 * their softmax and one temporary of it are live at once, 3 x L^2 x 4 bytes. 1024x1024 schnell (L = 4352, 24 heads:
 * 1.8 GB of scores at once) gets 2 heads per chunk with the default budget; 512x512 and smaller run all heads at once.
 */
export function autoHeadChunk(batch: number, numHeads: number, tokens: number, budgetBytes = DEFAULT_ATTENTION_BUDGET_BYTES): number {
  const perHead = 3 * batch * tokens * tokens * 4;
  return Math.max(1, Math.min(numHeads, Math.floor(budgetBytes / perHead)));
}

function blockDims(p: FluxParams): BlockDims {
  return { hidden_size: p.hiddenSize, num_heads: p.numHeads, mlp_ratio: p.mlpRatio, qkv_bias: p.qkvBias };
}

/** Every BFL key of the transformer with its shape. */
export function fluxParamSpec(p: FluxParams): ParamSpec {
  const h = p.hiddenSize;
  const spec: Record<string, readonly number[]> = {
    ...linearSpec('img_in', p.inChannels, h),
    ...prefixed('time_in.', MLPEmbedder.spec(TIME_EMBED_DIM, h)),
    ...prefixed('vector_in.', MLPEmbedder.spec(p.vecInDim, h)),
    ...(p.guidanceEmbed ? prefixed('guidance_in.', MLPEmbedder.spec(TIME_EMBED_DIM, h)) : {}),
    ...linearSpec('txt_in', p.contextInDim, h),
  };
  const d = blockDims(p);
  for (let i = 0; i < p.depth; i++) Object.assign(spec, prefixed(`double_blocks.${i}.`, DoubleStreamBlock.spec(d)));
  for (let i = 0; i < p.depthSingleBlocks; i++) Object.assign(spec, prefixed(`single_blocks.${i}.`, SingleStreamBlock.spec(d)));
  Object.assign(spec, prefixed('final_layer.', LastLayer.spec(h, p.outChannels)));
  return spec;
}

export class FluxInputError extends FluxError {
  constructor(message: string) {
    super('FLUX_INPUT', message);
    this.name = 'FluxInputError';
  }
}

function shapeOf(t: tf.Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

export class Flux implements FlowModel {
  readonly params: FluxParams;
  readonly pe_embedder: EmbedND;
  readonly weights: CheckpointWeights;
  readonly options: FluxOptions;
  /** Module prefixes in the order forward() fetches them from the weights. */
  readonly moduleOrder: readonly string[];

  /** `weights`: opened for these params (transformer/load.ts `openTransformerWeights`). */
  constructor(params: FluxParams, weights: CheckpointWeights, options: FluxOptions = {}) {
    this.params = validateFluxParams(params);
    this.moduleOrder = [
      'img_in.', 'time_in.', ...(params.guidanceEmbed ? ['guidance_in.'] : []), 'vector_in.', 'txt_in.',
      ...Array.from({ length: params.depth }, (_, i) => `double_blocks.${i}.`),
      ...Array.from({ length: params.depthSingleBlocks }, (_, i) => `single_blocks.${i}.`),
      'final_layer.',
    ];
    this.pe_embedder = new EmbedND(headDim(params), params.theta, params.axesDim);
    const spec = fluxParamSpec(this.params);
    const opened = weights.layout.spec;
    const other = Object.keys(spec).length !== Object.keys(opened).length || Object.entries(spec).some(([k, s]) => opened[k]?.join() !== s.join());
    if (other) throw new FluxError('FLUX_OPTION', 'the weights were opened for another transformer config; open them with these params (openTransformerWeights)');
    this.weights = weights;
    this.options = options;
    const c = options.attentionHeadChunk;
    if (c !== undefined && c !== 'auto' && !(Number.isInteger(c) && c >= 1)) {
      throw new FluxError('FLUX_OPTION', `attentionHeadChunk must be a positive integer (heads per chunk) or 'auto', got ${c}`);
    }
    const b = options.attentionBudgetBytes;
    if (b !== undefined && !(Number.isFinite(b) && b > 0)) {
      throw new FluxError('FLUX_OPTION', `attentionBudgetBytes must be a positive number of bytes, got ${b}`);
    }
  }

  /** The module after `prefix` in the order forward() runs them (after the last: the first, of the next step). */
  private moduleAfter(prefix: string): string {
    const order = this.moduleOrder;
    return order[(order.indexOf(prefix) + 1) % order.length]!;
  }

  get guidanceEmbed(): boolean {
    return this.params.guidanceEmbed;
  }

  /** Frees resident weights (streamed ones hold nothing between forwards); the checkpoint stays open. */
  dispose(): void {
    this.weights.dispose();
  }

  /** Builds the module under `prefix` from the weights, runs `fn` in a tidy, releases the weights. */
  private async withModule<M, T extends tf.TensorContainer>(prefix: string, build: (w: Weights) => M, fn: (m: M) => T): Promise<T> {
    const w = await this.weights.get(prefix);
    this.weights.prefetch(this.moduleAfter(prefix)); // reads overlap this module's compute
    try {
      this.options.onModule?.(prefix, 'loaded');
      const m = build(w);
      const out = tf.tidy(() => fn(m));
      this.options.onModule?.(prefix, 'ran');
      return out;
    } finally {
      this.weights.release(prefix, w);
    }
  }

  private checkInputs(x: FluxInputs): void {
    const p = this.params;
    const { img, img_ids, txt, txt_ids, timesteps, y, guidance } = x;
    const bad: string[] = [];
    const b = img.shape[0]!;
    if (img.rank !== 3 || img.shape[2] !== p.inChannels) bad.push(`img is ${shapeOf(img)}, expected [B, L_img, ${p.inChannels}]`);
    if (txt.rank !== 3 || txt.shape[0] !== b || txt.shape[2] !== p.contextInDim) bad.push(`txt is ${shapeOf(txt)}, expected [${b}, L_txt, ${p.contextInDim}]`);
    const nAxes = p.axesDim.length;
    const idsOk = (ids: tf.Tensor, l: number | undefined) =>
      (ids.rank === 3 && ids.shape[0] === b && ids.shape[1] === l && ids.shape[2] === nAxes) ||
      (ids.rank === 2 && ids.shape[0] === l && ids.shape[1] === nAxes);
    if (!idsOk(img_ids, img.shape[1])) bad.push(`img_ids is ${shapeOf(img_ids)}, expected [${b}, ${img.shape[1]}, ${nAxes}] or [${img.shape[1]}, ${nAxes}]`);
    if (!idsOk(txt_ids, txt.shape[1])) bad.push(`txt_ids is ${shapeOf(txt_ids)}, expected [${b}, ${txt.shape[1]}, ${nAxes}] or [${txt.shape[1]}, ${nAxes}]`);
    if (timesteps.rank !== 1 || timesteps.shape[0] !== b) bad.push(`timesteps is ${shapeOf(timesteps)}, expected [${b}]`);
    if (y.rank !== 2 || y.shape[0] !== b || y.shape[1] !== p.vecInDim) bad.push(`y is ${shapeOf(y)}, expected [${b}, ${p.vecInDim}]`);
    if (p.guidanceEmbed) {
      if (!guidance) bad.push('guidance is missing: this model is guidance-distilled (dev) and needs a guidance value per batch entry');
      else if (guidance.rank !== 1 || guidance.shape[0] !== b) bad.push(`guidance is ${shapeOf(guidance)}, expected [${b}]`);
    }
    if (bad.length) throw new FluxInputError(`transformer inputs do not fit the model: ${bad.join('; ')}`);
  }

  /**
   * model.py:97-119. Returns the predicted velocity [B, L_img, out_channels]; the inputs are not disposed.
   * `options.onBlock(k, depth + depth_single)` follows each double and single block (57 for FLUX.1).
   */
  // img [B, L_img, in], txt [B, L_txt, ctx], ids [B, L, 3], timesteps/guidance [B], y [B, vec] -> [B, L_img, out]
  async forward(inputs: FluxInputs, options: FlowForwardOptions = {}): Promise<tf.Tensor3D> {
    this.checkInputs(inputs);
    const p = this.params;
    const { img_ids, txt_ids, timesteps, y, guidance } = inputs;
    const live: tf.Tensor[] = [];
    const keep = <T extends tf.Tensor>(t: T): T => {
      live.push(t);
      return t;
    };
    try {
      const linearIn = (w: Weights) => linearFrom(w, '');
      const embedder = (w: Weights) => new MLPEmbedder(w);
      let img = keep(await this.withModule('img_in.', linearIn, (m) => m.forward(inputs.img)));
      let vec = keep(await this.withModule('time_in.', embedder, (m) => m.forward(timestepEmbedding(timesteps as tf.Tensor1D, TIME_EMBED_DIM))));
      if (p.guidanceEmbed) {
        const prev = vec;
        vec = keep(await this.withModule('guidance_in.', embedder,
          (m) => tf.add(prev, m.forward(timestepEmbedding(guidance as tf.Tensor1D, TIME_EMBED_DIM)))));
      }
      {
        const prev = vec;
        vec = keep(await this.withModule('vector_in.', embedder, (m) => tf.add(prev, m.forward(y))));
      }
      let txt = keep(await this.withModule('txt_in.', linearIn, (m) => m.forward(inputs.txt)));

      const batched = (t: tf.Tensor) => (t.rank === 3 ? t : tf.tile(tf.expandDims(t, 0), [inputs.img.shape[0]!, 1, 1])); // [L,3] -> [B,L,3]
      const ids = keep(tf.tidy(() => tf.concat([batched(txt_ids), batched(img_ids)], 1))); // [B, L_txt + L_img, n_axes]
      const pe: Rope = this.pe_embedder.forward(ids as tf.Tensor3D);
      keep(pe.cos);
      keep(pe.sin);

      const lAll = inputs.img.shape[1]! + inputs.txt.shape[1]!;
      const c = this.options.attentionHeadChunk ?? 'auto';
      const chunk = c === 'auto' ? autoHeadChunk(inputs.img.shape[0]!, p.numHeads, lAll, this.options.attentionBudgetBytes) : c;
      const dims = blockDims(p);
      const blocks = p.depth + p.depthSingleBlocks;
      for (let i = 0; i < p.depth; i++) {
        const prefix = `double_blocks.${i}.`;
        const [imgNext, txtNext] = await this.withModule(prefix, (w) => new DoubleStreamBlock(dims, w),
          (blk) => blk.forward(img, txt, vec, pe, chunk));
        img.dispose();
        txt.dispose();
        img = keep(imgNext);
        txt = keep(txtNext);
        options.onBlock?.(i + 1, blocks);
      }

      const lTxt = txt.shape[1]!;
      let x = keep(tf.concat([txt, img], 1)); // [B, L_txt + L_img, hidden]
      img.dispose();
      txt.dispose();
      for (let i = 0; i < p.depthSingleBlocks; i++) {
        const prefix = `single_blocks.${i}.`;
        const next = await this.withModule(prefix, (w) => new SingleStreamBlock(dims, w), (blk) => blk.forward(x, vec, pe, chunk));
        x.dispose();
        x = keep(next);
        options.onBlock?.(p.depth + i + 1, blocks);
      }
      const imgTokens = keep(tf.slice(x, [0, lTxt, 0], [-1, -1, -1])); // x[:, L_txt:]
      return await this.withModule('final_layer.', (w) => new LastLayer(w),
        (m) => m.forward(imgTokens, vec) as tf.Tensor3D);
    } finally {
      for (const t of live) if (!t.isDisposed) t.dispose();
    }
  }
}
