/**
 * What the sampler needs from a FLUX transformer: one velocity prediction per call, with BFL's
 * `Flux.forward(img, img_ids, txt, txt_ids, timesteps, y, guidance)` signature (src/flux/model.py).
 * The sampler owns the inputs; `forward` must not dispose them and returns a new tensor the sampler disposes.
 */
import type * as tf from '@tensorflow/tfjs-core';

export interface FlowModelInputs {
  /** Packed image latents [B, L, 64]. */
  img: tf.Tensor;
  /** Image token position ids [B, L, 3] or [L, 3]: (0, row, col). */
  img_ids: tf.Tensor;
  /** T5 hidden states [B, Lt, 4096]. */
  txt: tf.Tensor;
  /** Text position ids [B, Lt, 3] or [Lt, 3] (all zero). */
  txt_ids: tf.Tensor;
  /** Flow time t in [0, 1] per batch element [B] (1 = pure noise); the model scales it by 1000 itself. */
  timesteps: tf.Tensor;
  /** CLIP pooled text embedding [B, 768]. */
  y: tf.Tensor;
  /** Distilled guidance [B]; only for models with `guidanceEmbed` (FLUX.1 dev). */
  guidance?: tf.Tensor;
}

/** Per-call options of a forward: progress inside it. */
export interface FlowForwardOptions {
  /** Called after each block (1-based `block` of `blocks`; FLUX.1: 19 double + 38 single = 57). */
  onBlock?: (block: number, blocks: number) => void;
}

export interface FlowModel {
  /** True when the model embeds a guidance value (FLUX.1 dev), false for schnell. */
  readonly guidanceEmbed: boolean;
  /** Predicted velocity [B, L, 64]. */
  forward(inputs: FlowModelInputs, options?: FlowForwardOptions): tf.Tensor | Promise<tf.Tensor>;
}
