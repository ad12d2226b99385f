import * as tf from '@tensorflow/tfjs-core';

/** Linear weights held as [in, out] (the checkpoint's [out, in] transposed once when loaded), by identity. */
const PRE_TRANSPOSED = new WeakSet<object>();

export function isPreTransposed(t: object): boolean {
  return PRE_TRANSPOSED.has(t);
}

/** Marks a Linear weight that was built already transposed to [in, out]; returns it. */
export function markPreTransposed<T extends tf.Tensor>(t: T): T {
  PRE_TRANSPOSED.add(t);
  return t;
}

/** [out, in] of a Linear weight, whichever way it is held. */
function features(weight: tf.Tensor2D): [number, number] {
  const [a, b] = weight.shape;
  return PRE_TRANSPOSED.has(weight) ? [b, a] : [a, b];
}

/**
 * torch.nn.Linear: y = x W^T + b, with W stored [out, in] as in the checkpoints, or marked pre-transposed ([in, out],
 * markPreTransposed, as the loader lays every Linear weight out): a plain matMul, which tfjs-node and wasm run
 * several times faster than one with transposeB on these shapes (README, Performance). Same values either way.
 * x [..., in] -> [..., out].
 */
export function linear(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D | null): tf.Tensor {
  const [outFeatures, inFeatures] = features(weight);
  const transposeB = !PRE_TRANSPOSED.has(weight);
  const lead = x.shape.slice(0, -1);
  if (x.rank < 1 || x.shape[x.rank - 1] !== inFeatures) {
    throw new Error(`linear: input [${x.shape.join(', ')}] does not end in ${inFeatures} (weight [${weight.shape.join(', ')}])`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outFeatures)) {
    throw new Error(`linear: bias [${bias.shape.join(', ')}] does not match weight [${weight.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const x2 = tf.reshape(x, [-1, inFeatures]); // [..., in] -> [N, in]
    // NOTE: not tf.fused.matMul: its bias with transposeB is wrong on the wasm backend (tfjs 4.22),
    // relL2 ~0.3 against torch; the separate add costs one pass over the output.
    const xw = tf.matMul(x2, weight, false, transposeB); // [N, in] x [out, in]^T (or [in, out]) -> [N, out]
    const y = bias ? tf.add(xw, bias) : xw;
    return tf.reshape(y, [...lead, outFeatures]); // [N, out] -> [..., out]
  });
}

/** A Linear layer whose fields are the checkpoint key segments (`weight`, `bias`). */
export class Linear {
  readonly weight: tf.Tensor2D;
  readonly bias: tf.Tensor1D | null;
  constructor(
    weight: tf.Tensor2D,
    bias: tf.Tensor1D | null = null,
  ) {
    this.weight = weight;
    this.bias = bias;
  }

  get inFeatures(): number {
    return features(this.weight)[1];
  }

  get outFeatures(): number {
    return features(this.weight)[0];
  }

  forward(x: tf.Tensor): tf.Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** The Linear of `${prefix}.weight` (and `${prefix}.bias` when the record has it) in a module's weights ('' = no prefix). */
export function linearFrom(w: Readonly<Record<string, tf.Tensor>>, prefix: string): Linear {
  const at = prefix ? `${prefix}.` : '';
  const weight = w[`${at}weight`];
  if (!weight) throw new Error(`weights have no ${at}weight (given: ${Object.keys(w).slice(0, 8).join(', ')})`);
  return new Linear(weight as tf.Tensor2D, (w[`${at}bias`] as tf.Tensor1D | undefined) ?? null);
}
