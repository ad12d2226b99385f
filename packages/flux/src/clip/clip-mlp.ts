/** transformers `CLIPMLP`: fc2(act(fc1(x))), act = `quick_gelu` (x * sigmoid(1.702 x)) for CLIP-L. */
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from './config.ts';
import { linearFrom, type Linear } from '../nn/linear.ts';
import { TextEncoderInputError } from '../text-encoders/token-ids.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

const ACTS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  quick_gelu: (x) => tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)))),
  // torch.nn.functional.gelu (erf form)
  gelu: (x) => tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1))),
};

export function clipActivation(name: string): (x: tf.Tensor) => tf.Tensor {
  const act = ACTS[name];
  if (!act) throw new TextEncoderInputError(`CLIP hidden_act ${JSON.stringify(name)} is not supported (supported: ${Object.keys(ACTS).join(', ')})`);
  return act;
}

export class CLIPMLP {
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly act: (x: tf.Tensor) => tf.Tensor;

  static spec(c: ClipTextConfig): ParamSpec {
    return { ...linearSpec('fc1', c.hiddenSize, c.intermediateSize), ...linearSpec('fc2', c.intermediateSize, c.hiddenSize) };
  }

  constructor(config: ClipTextConfig, w: Weights) {
    this.fc1 = linearFrom(w, 'fc1');
    this.fc2 = linearFrom(w, 'fc2');
    this.act = clipActivation(config.hiddenAct);
  }

  /** x [B, L, C] -> [B, L, C]. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(this.act(this.fc1.forward(x))));
  }
}
