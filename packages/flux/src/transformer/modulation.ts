import * as tf from '@tensorflow/tfjs-core';
import { linearFrom, silu, type Linear } from './ops.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

/** Each [B, 1, dim]. */
export interface ModulationOut {
  shift: tf.Tensor;
  scale: tf.Tensor;
  gate: tf.Tensor;
}

/** BFL Modulation (layers.py:113-126): lin(silu(vec)) split into 6 (double) or 3 (single) chunks of dim. */
export class Modulation {
  readonly lin: Linear;
  readonly multiplier: number;

  static spec(prefix: string, dim: number, double: boolean): ParamSpec {
    return linearSpec(`${prefix}.lin`, dim, (double ? 6 : 3) * dim);
  }

  readonly is_double: boolean;
  constructor(
    w: Weights,
    prefix: string,
    is_double: boolean,
  ) {
    this.is_double = is_double;
    this.lin = linearFrom(w, `${prefix}.lin`);
    this.multiplier = is_double ? 6 : 3;
  }

  // vec [B, dim] -> (shift, scale, gate) x 1 or 2
  forward(vec: tf.Tensor): [ModulationOut, ModulationOut | null] {
    const out = tf.tidy(() => tf.split(tf.expandDims(this.lin.forward(silu(vec)), 1), this.multiplier, -1)); // [B,1,k*dim] -> k x [B,1,dim]
    const first = { shift: out[0]!, scale: out[1]!, gate: out[2]! };
    const second = this.is_double ? { shift: out[3]!, scale: out[4]!, gate: out[5]! } : null;
    return [first, second];
  }
}

/** (1 + scale) * x + shift */
export function modulate(x: tf.Tensor, m: ModulationOut): tf.Tensor {
  return tf.tidy(() => tf.add(tf.mul(tf.add(1, m.scale), x), m.shift));
}
