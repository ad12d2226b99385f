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
 *
 * In `bf16` precision, Linear and conv weights take the other stage 1 instead: their stored bytes go to TensorFlow
 * untouched (bf16 bitcast, fp8 looked up in a table inside TensorFlow: runtime/bf16.ts), the row op is a byte copy
 * (`assembleBytes`), and a Linear weight keeps the checkpoint's [out, in] (the bf16 matmul reads it transposed in
 * place); fp16 / fp32 sources are decoded and cast once. Other tensors (biases, norms, embeddings) stay float32.
 */
import * as tf from '@tensorflow/tfjs-core';
import { markPreTransposed } from '../nn/linear.ts';
import { uploadCopies } from '../runtime/backend.ts';
import { bf16FromBytes, bf16FromFloat32, bf16FromFp8, fp8FromBf16, reshapeBf16, storedAsBf16, transposeBf16, type Precision } from '../runtime/bf16.ts';
import { assemble, assembleBytes, type RawTensor } from './assemble.ts';
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
  readonly precision: Precision;
  /** 'fp8': bf16 Linear weights are kept as fp8 e4m3fn (the fp8 resident mode). */
  readonly linearStore: 'as-built' | 'fp8';
  /** Reused host buffer where the backend copies on upload (wasm): no fresh, page-faulting buffer per tensor. */
  private scratch = new Float32Array(0);

  constructor(precision: Precision = 'fp32', linearStore: 'as-built' | 'fp8' = 'as-built') {
    this.precision = precision;
    this.linearStore = linearStore;
  }

  /** The model tensor of `rule` from its sources (in `rule.from` order); RangeError if they cannot combine. */
  build(rule: Rule, parts: readonly RawTensor[], placement: Placement): tf.Tensor {
    if (this.precision === 'bf16' && placement !== 'plain') return this.buildBf16(rule, parts, placement);
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

  /**
   * bf16 stage 1: a Linear weight [out, in] (checkpoint layout) or a conv weight in tfjs' HWIO, as an opaque bf16
   * tensor made from the stored bytes.
   */
  private buildBf16(rule: Rule, parts: readonly RawTensor[], placement: Placement): tf.Tensor {
    const rowOp = rule.op === 'conv1x1' ? 'rename' : rule.op;
    const dtype = parts[0]!.dtype;
    const asStored = storedAsBf16(dtype) && parts.every((p) => p.dtype === dtype && p.scale === parts[0]!.scale);
    let w: tf.Tensor;
    if (asStored) {
      const scale = parts[0]!.scale;
      const a = assembleBytes(parts.map((p) => ({ ...p, scale: undefined })), rowOp);
      w = dtype === 'BF16' ? bf16FromBytes(a.bytes, a.shape) : bf16FromFp8(a.bytes, a.shape, dtype as 'F8_E4M3' | 'F8_E5M2', scale);
    } else {
      const a = assemble(parts, rowOp, false); // fp16 / fp32 (or mixed, or fp8 with per-part scales): decoded, cast once
      w = bf16FromFloat32(tf.tensor(a.data, a.shape, 'float32'), true);
    }
    if (placement === 'linear') return this.linearStore === 'fp8' ? fp8FromBf16(w, true) : w;
    // conv: [out, in, kh, kw] -> [kh, kw, in, out]; a 1x1 conv read from a linear [out, in] -> [1, 1, in, out]
    try {
      if (rule.op === 'conv1x1') {
        const t = transposeBf16(w, [1, 0]);
        try {
          return reshapeBf16(t, [1, 1, ...t.shape]);
        } finally {
          t.dispose();
        }
      }
      return transposeBf16(w, [2, 3, 1, 0]);
    } finally {
      w.dispose();
    }
  }

  /** Lets the scratch buffer go (it is reallocated on the next use). */
  clear(): void {
    this.scratch = new Float32Array(0);
  }
}
