/**
 * transformers `T5LayerFF` (`layer.1.`): x + DenseReluDense(layer_norm(x)), where DenseReluDense is
 * `T5DenseGatedActDense` (T5 v1.1, FLUX: wo(act(wi_0 h) * wi_1 h)) or `T5DenseActDense` (T5 v1.0: wo(act(wi h))).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { T5Config } from './config.ts';
import { geluTanh } from '../nn/gelu.ts';
import { linear } from '../nn/linear.ts';
import { T5LayerNorm } from './t5-layer-norm.ts';
import { TextEncoderInputError } from '../text-encoders/token-ids.ts';
import { prefixed, take, type ParamSpec, type Weights } from '../weights/spec.ts';

/** transformers ACT2FN entries the T5 configs use. */
const ACTS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  relu: (x) => tf.relu(x),
};

export function t5Activation(name: string): (x: tf.Tensor) => tf.Tensor {
  const act = ACTS[name];
  if (!act) throw new TextEncoderInputError(`T5 activation ${JSON.stringify(name)} is not supported (supported: ${Object.keys(ACTS).join(', ')})`);
  return act;
}

export class T5LayerFF {
  readonly DenseReluDense: { wi_0?: tf.Tensor2D; wi_1?: tf.Tensor2D; wi?: tf.Tensor2D; wo: tf.Tensor2D };
  readonly layer_norm: T5LayerNorm;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  static spec(c: T5Config): ParamSpec {
    const wi: ParamSpec = c.isGatedAct ? { 'wi_0.weight': [c.dFf, c.dModel], 'wi_1.weight': [c.dFf, c.dModel] } : { 'wi.weight': [c.dFf, c.dModel] };
    return { ...prefixed('DenseReluDense.', { ...wi, 'wo.weight': [c.dModel, c.dFf] }), ...T5LayerNorm.spec('layer_norm', c) };
  }

  readonly config: T5Config;
  constructor(
    config: T5Config,
    w: Weights,
  ) {
    this.config = config;
    const d = (k: string) => take<tf.Tensor2D>(w, `DenseReluDense.${k}.weight`);
    this.DenseReluDense = config.isGatedAct ? { wi_0: d('wi_0'), wi_1: d('wi_1'), wo: d('wo') } : { wi: d('wi'), wo: d('wo') };
    this.layer_norm = new T5LayerNorm(take<tf.Tensor1D>(w, 'layer_norm.weight'), config.layerNormEpsilon);
    this.act = t5Activation(config.denseActFn);
  }

  /** x [B, L, d_model] -> [B, L, d_model]. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.layer_norm.forward(x);
      const { wi_0, wi_1, wi, wo } = this.DenseReluDense;
      const inner = wi ? this.act(linear(h, wi)) : tf.mul(this.act(linear(h, wi_0!)), linear(h, wi_1!)); // [B, L, d_ff]
      return tf.add(x, linear(inner, wo));
    });
  }
}
