import * as tf from '@tensorflow/tfjs-core';

/**
 * torch.nn.Linear: y = x W^T + b, with W stored [out, in] as in the checkpoints.
 * x [..., in] -> [..., out]. The transpose is folded into the matmul (transposeB), never copied.
 */
export function linear(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D | null): tf.Tensor {
  const [outFeatures, inFeatures] = weight.shape;
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
    const xw = tf.matMul(x2, weight, false, true); // [N, in] x [out, in]^T -> [N, out]
    const y = bias ? tf.add(xw, bias) : xw;
    return tf.reshape(y, [...lead, outFeatures]); // [N, out] -> [..., out]
  });
}

/** A Linear layer whose fields are the checkpoint key segments (`weight`, `bias`). */
export class Linear {
  constructor(
    readonly weight: tf.Tensor2D,
    readonly bias: tf.Tensor1D | null = null,
  ) {}

  get inFeatures(): number {
    return this.weight.shape[1];
  }

  get outFeatures(): number {
    return this.weight.shape[0];
  }

  forward(x: tf.Tensor): tf.Tensor {
    return linear(x, this.weight, this.bias);
  }
}
