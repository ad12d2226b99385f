import * as tf from '@tensorflow/tfjs-core';

const GELU_A = 2 * Math.sqrt(2 / Math.PI) * 0.044715;
const GELU_B = 2 * Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh approximation (torch.nn.GELU(approximate="tanh"), transformers' `gelu_new`):
 * 0.5 x (1 + tanh(z)) with z = sqrt(2/pi) (x + 0.044715 x^3), computed as x sigmoid(2z) (the same function:
 * 0.5 (1 + tanh(z)) = sigmoid(2z)) in 6 element-wise ops instead of 9: the MLP activations are the largest
 * tensors of a transformer block. Equal to the tanh form up to float32 rounding.
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.square(x), GELU_A), GELU_B)))));
}
