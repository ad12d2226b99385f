/**
 * The one executor of the loading rules (weights/layout.ts): a rule plus its source tensors as stored -> the tensor
 * the model computes with, for every model, layout and residency.
 *
 * Two stages:
 *   1. `assemble` (weights/assemble.ts, on the host): the sources' bytes (any float dtype, ComfyUI fp8 scales
 *      applied) decoded to float32 in one pass, with the rule's row op (concat, half swap) and, for a Linear
 *      weight, the transpose to [in, out] (nn/linear.ts multiplies such a weight plainly);
 *   2. upload, and the placement's last step: a conv weight goes [out, in, kh, kw] -> [kh, kw, in, out] (tfjs'
 *      HWIO), a 1x1 conv read from a linear is reshaped.
 * Stage 1 is the replaceable part: another precision (bf16 handles uploaded as stored) swaps it, the rules and
 * their validation stay.
 */
import * as tf from '@tensorflow/tfjs-core';
import { markPreTransposed } from '../nn/linear.ts';
import { uploadCopies } from '../runtime/backend.ts';
import { assemble, type RawTensor } from './assemble.ts';
import type { Rule } from './layout.ts';

/** How the model uses a tensor: a Linear weight ([in, out]), a conv weight (HWIO), or as stored. */
export type Placement = 'linear' | 'conv' | 'plain';

/** The placement of model key `key` with checkpoint-layout shape `shape`; `tables` are 2-D weights that are not Linears. */
export function placementOf(key: string, shape: readonly number[], tables?: ReadonlySet<string>): Placement {
  if (!key.endsWith('weight')) return 'plain';
  if (shape.length === 4) return 'conv';
  if (shape.length === 2 && !tables?.has(key)) return 'linear';
  return 'plain';
}

export class WeightExecutor {
  /** Reused host buffer where the backend copies on upload (wasm): no fresh, page-faulting buffer per tensor. */
  private scratch = new Float32Array(0);

  /** The model tensor of `rule` from its sources (in `rule.from` order); RangeError if they cannot combine. */
  build(rule: Rule, parts: readonly RawTensor[], placement: Placement): tf.Tensor {
    const rowOp = rule.op === 'conv1x1' ? 'rename' : rule.op;
    // a 1x1 conv read from a linear [out, in] is laid out like a Linear: [in, out] is HWIO's [1, 1, in, out]
    const transpose = placement === 'linear' || (placement === 'conv' && rule.op === 'conv1x1');
    let scratch: Float32Array | undefined;
    if (uploadCopies()) {
      const n = parts.reduce((acc, p) => acc + p.shape.reduce((x, y) => x * y, 1), 0);
      if (this.scratch.length < n) this.scratch = new Float32Array(n);
      scratch = this.scratch;
    }
    const a = assemble(parts, rowOp, transpose, scratch);
    if (placement === 'linear') return markPreTransposed(tf.tensor(a.data, a.shape, 'float32'));
    if (placement === 'conv') {
      if (rule.op === 'conv1x1') return tf.tensor(a.data, [1, 1, ...a.shape], 'float32');
      return tf.tidy(() => tf.transpose(tf.tensor(a.data, a.shape, 'float32'), [2, 3, 1, 0])); // [out,in,kh,kw] -> [kh,kw,in,out]
    }
    return tf.tensor(a.data, a.shape, 'float32');
  }

  /** Lets the scratch buffer go (it is reallocated on the next use). */
  clear(): void {
    this.scratch = new Float32Array(0);
  }
}
