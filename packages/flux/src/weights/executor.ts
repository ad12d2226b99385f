/**
 * Streamed weights from raw checkpoint bytes to a float32 tensor: assembled on the host (weights/assemble.ts:
 * decode, row ops, Linear weights transposed to [in, out] and marked so `linear` multiplies them plainly), then
 * uploaded. Where the backend copies on upload (wasm), one scratch buffer is reused for every tensor instead of a
 * fresh, page-faulting one per tensor.
 */
import * as tf from '@tensorflow/tfjs-core';
import { markPreTransposed } from '../nn/linear.ts';
import { uploadCopies } from '../runtime/backend.ts';
import { assemble, type AssembleOp, type RawTensor } from './assemble.ts';

export class WeightUploader {
  private scratch = new Float32Array(0);

  /** `parts` combined by `op` (and transposed, for a Linear weight) as a new tensor; RangeError if they cannot combine. */
  tensor(parts: readonly RawTensor[], op: AssembleOp, transpose: boolean): tf.Tensor {
    let scratch: Float32Array | undefined;
    if (uploadCopies()) {
      const n = parts.reduce((acc, p) => acc + p.shape.reduce((x, y) => x * y, 1), 0);
      if (this.scratch.length < n) this.scratch = new Float32Array(n);
      scratch = this.scratch;
    }
    const a = assemble(parts, op, transpose, scratch);
    const t = tf.tensor(a.data, a.shape, 'float32');
    return transpose ? markPreTransposed(t) : t;
  }

  /** Lets the scratch buffer go (it is reallocated on the next use). */
  clear(): void {
    this.scratch = new Float32Array(0);
  }
}
