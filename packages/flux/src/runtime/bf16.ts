/**
 * bf16 inside TensorFlow, under tfjs-node. tfjs has no bf16 dtype, but the TensorFlow C library it drives does, and
 * its oneDNN build runs bf16 matmuls and convolutions on AVX512_BF16 / AMX CPUs (and cuBLAS/cuDNN on GPUs) at two to
 * three times float32's speed. These functions reach those kernels through the binding's raw `executeOp`:
 *
 *   - a bf16 tensor is a TensorFlow handle wrapped as an opaque tfjs tensor (`isBf16`): tracked, tidied and disposed
 *     like any other, but only the functions here may read it (tfjs itself would see float32 and misread it);
 *   - weights become bf16 from their stored bytes with no per-element JavaScript: bf16 bytes are uploaded as uint8
 *     and `Bitcast`; fp8 bytes are uploaded as uint8 and looked up in a 256-entry bf16 table (`GatherV2`, as TF's
 *     `Bitcast` refuses float8 types); float32 values are `Cast` once;
 *   - every product takes float32 (or bf16) inputs and returns float32: the inputs are cast to bf16, multiplied by
 *     oneDNN's bf16 kernel (float32 accumulation), and the bf16 result is cast back. Everything between products
 *     (norms, softmax, RoPE, modulation, residuals) stays float32 in tfjs, as PyTorch's bf16 autocast keeps
 *     normalisation statistics and reductions in float32.
 *
 * NOTE: oneDNN's kernels (`_MklBatchMatMulV2`, the bf16 brgemm) are only registered with TF_ENABLE_ONEDNN_OPTS=1,
 * which runtime/backend.ts sets before libtensorflow loads; without it bf16 matmuls fall back to Eigen and are
 * slower than float32.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FluxError } from '@flux-ts/core';
import { f8e4m3LookupTable, f8e5m2LookupTable, type Dtype } from '../weights/dtypes.ts';

/** TF_DataType numbers (tensorflow/c/tf_datatype.h). */
export const TF_DTYPE = Object.freeze({ FLOAT: 1, INT32: 3, UINT8: 4, BFLOAT16: 14, FLOAT8_E4M3FN: 25 } as const);

interface TensorMetadata {
  id: number;
  shape: number[];
  dtype: number;
}

interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

interface Binding {
  executeOp(op: string, attrs: OpAttr[], inputIds: number[], numOutputs: number): TensorMetadata[];
  createTensor(shape: number[], dtype: number, values: Uint8Array | Float32Array | Int32Array): number;
  deleteTensor(id: number): void;
  getNumOfTensors(): number;
  TF_ATTR_TYPE: number;
  TF_ATTR_BOOL: number;
  TF_ATTR_INT: number;
  TF_ATTR_STRING: number;
}

interface NodeBackend {
  binding: Binding;
  getInputTensorIds(tensors: tf.Tensor[]): number[];
  createOutputTensor(meta: TensorMetadata): tf.Tensor;
  tensorMap: { set(dataId: object, info: unknown): void; get(dataId: object): { id: number; dtype: number | string } | undefined };
}

export class PrecisionError extends FluxError {
  constructor(message: string) {
    super('PRECISION', message);
    this.name = 'PrecisionError';
  }
}

/** Whether bf16 kernels can be reached: the native tensorflow backend is the current one. */
export function bf16Available(): boolean {
  const b = tf.getBackend() === 'tensorflow' ? (tf.backend() as unknown as Partial<NodeBackend>) : undefined;
  return typeof b?.binding?.executeOp === 'function';
}

function native(): NodeBackend {
  if (!bf16Available()) {
    throw new PrecisionError(`bf16 needs the native tensorflow backend (the current one is ${tf.getBackend()}); use precision fp32, or run \`flux-ts setup-native\``);
  }
  return tf.backend() as unknown as NodeBackend;
}

/** Live TensorFlow handles of the binding (tfjs tensors on the native backend, and any raw ones). */
export function nativeHandleCount(): number {
  return bf16Available() ? native().binding.getNumOfTensors() : 0;
}

/** The opaque bf16 tensors made here, and the fp8 (e4m3fn) ones, which compute as bf16 (cast per use). */
const BF16 = new WeakSet<tf.Tensor>();
const FP8 = new WeakSet<tf.Tensor>();

/** A weight that computes in bf16: held as bf16, or as fp8 and cast to bf16 each time it is used. */
export function isBf16(t: tf.Tensor | null | undefined): boolean {
  return t != null && (BF16.has(t) || FP8.has(t));
}

/** A weight held as fp8 e4m3fn (the fp8 resident mode: half of bf16's memory). */
export function isFp8(t: tf.Tensor | null | undefined): boolean {
  return t != null && FP8.has(t);
}

/** The TensorFlow dtype number of a tensor's handle (tests check that bf16 weights really are bf16). */
export function nativeDtype(t: tf.Tensor): number | undefined {
  const d = native().tensorMap.get(t.dataId as object)?.dtype;
  return typeof d === 'number' ? d : d === 'float32' ? TF_DTYPE.FLOAT : undefined;
}

const type = (b: Binding, name: string, value: number): OpAttr => ({ name, type: b.TF_ATTR_TYPE, value });
const bool = (b: Binding, name: string, value: boolean): OpAttr => ({ name, type: b.TF_ATTR_BOOL, value });
const ints = (b: Binding, name: string, value: number | number[]): OpAttr => ({ name, type: b.TF_ATTR_INT, value });
const str = (b: Binding, name: string, value: string): OpAttr => ({ name, type: b.TF_ATTR_STRING, value });

/** A raw handle as a tfjs tensor: float32 and int32 ones as ordinary tensors, bf16 ones as opaque ones. */
function wrap(be: NodeBackend, meta: TensorMetadata): tf.Tensor {
  if (meta.dtype !== TF_DTYPE.BFLOAT16 && meta.dtype !== TF_DTYPE.FLOAT8_E4M3FN) return be.createOutputTensor(meta);
  const dataId = {};
  be.tensorMap.set(dataId, { shape: meta.shape, dtype: meta.dtype, id: meta.id, values: null, refCount: 1 });
  const t = tf.engine().makeTensorFromTensorInfo({ dataId, shape: meta.shape, dtype: 'float32' });
  (meta.dtype === TF_DTYPE.BFLOAT16 ? BF16 : FP8).add(t);
  return t;
}

/** Runs one op on raw handle ids; returns its outputs' metadata (the caller owns and frees them). */
function exec(be: NodeBackend, op: string, attrs: OpAttr[], ids: number[], outputs = 1): TensorMetadata[] {
  return be.binding.executeOp(op, attrs, ids, outputs);
}

/** Handles of `tensors` as bf16: bf16 ones as they are, float32 and fp8 ones cast (those casts are `temps`, to free). */
function bf16Ids(be: NodeBackend, tensors: tf.Tensor[], temps: number[]): number[] {
  const b = be.binding;
  const ids = be.getInputTensorIds(tensors);
  return ids.map((id, i) => {
    if (BF16.has(tensors[i]!)) return id;
    const from = FP8.has(tensors[i]!) ? TF_DTYPE.FLOAT8_E4M3FN : TF_DTYPE.FLOAT;
    const [m] = exec(be, 'Cast', [type(b, 'SrcT', from), type(b, 'DstT', TF_DTYPE.BFLOAT16), bool(b, 'Truncate', false)], [id]);
    temps.push(m!.id);
    return m!.id;
  });
}

/** A bf16 result handle cast to float32 and wrapped; the bf16 handle is freed. */
function toFloat32(be: NodeBackend, meta: TensorMetadata): tf.Tensor {
  const b = be.binding;
  try {
    const [m] = exec(be, 'Cast', [type(b, 'SrcT', TF_DTYPE.BFLOAT16), type(b, 'DstT', TF_DTYPE.FLOAT), bool(b, 'Truncate', false)], [meta.id]);
    return wrap(be, m!);
  } finally {
    b.deleteTensor(meta.id);
  }
}

function freeAll(b: Binding, ids: number[]): void {
  for (const id of ids) b.deleteTensor(id);
}

// ---------------------------------------------------------------------------------------------------------------------
// Weights: stored bytes -> bf16 handles

/** Little-endian bf16 bytes of `shape` -> an opaque bf16 tensor, with no per-element work in JavaScript. */
export function bf16FromBytes(bytes: Uint8Array, shape: readonly number[]): tf.Tensor {
  const be = native();
  const b = be.binding;
  const n = shape.reduce((a, c) => a * c, 1);
  if (bytes.byteLength !== 2 * n) throw new RangeError(`bf16FromBytes: ${bytes.byteLength} bytes for [${shape.join(', ')}] (${2 * n} expected)`);
  const u8 = b.createTensor([...shape, 2], TF_DTYPE.UINT8, bytes); // NOTE: may wrap `bytes` itself: do not reuse them
  try {
    const [m] = exec(be, 'Bitcast', [type(b, 'T', TF_DTYPE.UINT8), type(b, 'type', TF_DTYPE.BFLOAT16)], [u8]);
    return wrap(be, m!);
  } finally {
    b.deleteTensor(u8);
  }
}

/** 256-entry bf16 tables of the fp8 formats (each fp8 value is exactly representable in bf16), per backend. */
const fp8Tables = new Map<string, tf.Tensor>();

function fp8Table(dtype: 'F8_E4M3' | 'F8_E5M2'): tf.Tensor {
  let t = fp8Tables.get(dtype);
  if (!t || t.isDisposed) {
    const f32 = dtype === 'F8_E4M3' ? f8e4m3LookupTable() : f8e5m2LookupTable();
    t = tf.keep(bf16FromFloat32(tf.tensor1d(f32), true));
    fp8Tables.set(dtype, t);
  }
  return t;
}

/**
 * fp8 bytes (F8_E4M3 = e4m3fn, F8_E5M2) of `shape` -> a bf16 tensor, converted inside TensorFlow: the bytes go up as
 * uint8 and index the format's 256-entry bf16 table. `scale` (ComfyUI scaled fp8) multiplies in bf16.
 */
export function bf16FromFp8(bytes: Uint8Array, shape: readonly number[], dtype: 'F8_E4M3' | 'F8_E5M2', scale?: number): tf.Tensor {
  const be = native();
  const b = be.binding;
  const table = fp8Table(dtype);
  const temps: number[] = [];
  try {
    const u8 = b.createTensor([...shape], TF_DTYPE.UINT8, bytes);
    temps.push(u8);
    const [idx] = exec(be, 'Cast', [type(b, 'SrcT', TF_DTYPE.UINT8), type(b, 'DstT', TF_DTYPE.INT32), bool(b, 'Truncate', false)], [u8]);
    temps.push(idx!.id);
    const axis = b.createTensor([], TF_DTYPE.INT32, new Int32Array([0]));
    temps.push(axis);
    const [tableId] = be.getInputTensorIds([table]);
    const [g] = exec(be, 'GatherV2', [type(b, 'Tparams', TF_DTYPE.BFLOAT16), type(b, 'Tindices', TF_DTYPE.INT32), type(b, 'Taxis', TF_DTYPE.INT32), ints(b, 'batch_dims', 0)], [tableId!, idx!.id, axis]);
    if (scale === undefined || scale === 1) return wrap(be, g!);
    temps.push(g!.id);
    const s = bf16FromFloat32(tf.scalar(scale), true);
    try {
      const [sid] = be.getInputTensorIds([s]);
      const [m] = exec(be, 'Mul', [type(b, 'T', TF_DTYPE.BFLOAT16)], [g!.id, sid!]);
      return wrap(be, m!);
    } finally {
      s.dispose();
    }
  } finally {
    freeAll(b, temps);
  }
}

/** A float32 tensor cast to an opaque bf16 one (fp16 / fp32 weights, cast once at load); `dispose` the input. */
export function bf16FromFloat32(t: tf.Tensor, dispose = false): tf.Tensor {
  const be = native();
  const b = be.binding;
  try {
    const [id] = be.getInputTensorIds([t]);
    const [m] = exec(be, 'Cast', [type(b, 'SrcT', TF_DTYPE.FLOAT), type(b, 'DstT', TF_DTYPE.BFLOAT16), bool(b, 'Truncate', false)], [id!]);
    return wrap(be, m!);
  } finally {
    if (dispose) t.dispose();
  }
}

/**
 * A bf16 weight stored as fp8 e4m3fn (round to nearest, as torch's `.to(torch.float8_e4m3fn)`), for the fp8
 * resident mode; `dispose` the input. It computes in bf16, cast back each time it is used.
 */
export function fp8FromBf16(t: tf.Tensor, dispose = false): tf.Tensor {
  const be = native();
  const b = be.binding;
  try {
    const [id] = be.getInputTensorIds([t]);
    const [m] = exec(be, 'Cast', [type(b, 'SrcT', TF_DTYPE.BFLOAT16), type(b, 'DstT', TF_DTYPE.FLOAT8_E4M3FN), bool(b, 'Truncate', false)], [id!]);
    return wrap(be, m!);
  } finally {
    if (dispose) t.dispose();
  }
}

/** TensorFlow op `op` on bf16 tensor `t` with an int32 vector operand (its type attribute `attr`). */
function bf16WithInt32Operand(t: tf.Tensor, op: string, attr: string, values: readonly number[]): tf.Tensor {
  const be = native();
  const b = be.binding;
  const v = b.createTensor([values.length], TF_DTYPE.INT32, Int32Array.from(values));
  try {
    const [id] = be.getInputTensorIds([t]);
    const [m] = exec(be, op, [type(b, 'T', TF_DTYPE.BFLOAT16), type(b, attr, TF_DTYPE.INT32)], [id!, v]);
    return wrap(be, m!);
  } finally {
    b.deleteTensor(v);
  }
}

/** A bf16 tensor with its dims permuted (TensorFlow's Transpose, in bf16). */
export function transposeBf16(t: tf.Tensor, perm: readonly number[]): tf.Tensor {
  return bf16WithInt32Operand(t, 'Transpose', 'Tperm', perm);
}

/** A bf16 tensor reshaped (no copy in TensorFlow). */
export function reshapeBf16(t: tf.Tensor, shape: readonly number[]): tf.Tensor {
  return bf16WithInt32Operand(t, 'Reshape', 'Tshape', shape);
}

/** Is `dtype` one the bf16 weight path takes as stored bytes (no host decode)? */
export function storedAsBf16(dtype: Dtype): dtype is 'BF16' | 'F8_E4M3' | 'F8_E5M2' {
  return dtype === 'BF16' || dtype === 'F8_E4M3' || dtype === 'F8_E5M2';
}

// ---------------------------------------------------------------------------------------------------------------------
// Products in bf16, float32 in and out

/**
 * `a b` (tf.matMul semantics, batched over leading dims, broadcast as BatchMatMulV2 does) in bf16 with float32
 * accumulation; `a`, `b` float32 or bf16; returns float32. A Linear passes its checkpoint-layout weight [out, in]
 * as `b` with transposeB (oneDNN's brgemm reads it in place: no transpose is ever materialised).
 */
export function matMulBf16(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const be = native();
  const bind = be.binding;
  const temps: number[] = [];
  try {
    const [ai, bi] = bf16Ids(be, [a, b], temps);
    const [m] = exec(be, 'BatchMatMulV2', [type(bind, 'T', TF_DTYPE.BFLOAT16), bool(bind, 'adj_x', transposeA), bool(bind, 'adj_y', transposeB)], [ai!, bi!]);
    return toFloat32(be, m!);
  } finally {
    freeAll(bind, temps);
  }
}

/**
 * NHWC convolution in bf16 (float32 or bf16 input, bf16 or float32 HWIO filter), float32 out; `pad` 'same' |
 * 'valid', or explicit [top, bottom, left, right].
 */
export function conv2dBf16(x: tf.Tensor4D, filter: tf.Tensor, stride: number, pad: 'same' | 'valid' | [number, number, number, number]): tf.Tensor4D {
  const be = native();
  const b = be.binding;
  const temps: number[] = [];
  try {
    const [xi, fi] = bf16Ids(be, [x, filter], temps);
    const explicit = Array.isArray(pad);
    const attrs = [
      type(b, 'T', TF_DTYPE.BFLOAT16),
      ints(b, 'strides', [1, stride, stride, 1]),
      str(b, 'padding', explicit ? 'EXPLICIT' : pad.toUpperCase()),
      str(b, 'data_format', 'NHWC'),
      bool(b, 'use_cudnn_on_gpu', true),
      ints(b, 'dilations', [1, 1, 1, 1]),
      ...(explicit ? [ints(b, 'explicit_paddings', [0, 0, pad[0], pad[1], pad[2], pad[3], 0, 0])] : []),
    ];
    const [m] = exec(be, 'Conv2D', attrs, [xi!, fi!]);
    return toFloat32(be, m!) as tf.Tensor4D;
  } finally {
    freeAll(b, temps);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The precision option

/** How the models compute: `bf16` (matmuls and convolutions in bf16, the rest float32) or `fp32` (exact parity). */
export type Precision = 'fp32' | 'bf16';
export type PrecisionChoice = Precision | 'auto';
export const PRECISION_CHOICES: readonly PrecisionChoice[] = Object.freeze(['auto', 'bf16', 'fp32']);

/** `auto` is bf16 on the native tensorflow backend (CPU or GPU) and fp32 elsewhere; bf16 elsewhere is an error. */
export function resolvePrecision(choice: PrecisionChoice = 'auto'): Precision {
  if (choice !== 'auto' && choice !== 'bf16' && choice !== 'fp32') {
    throw new PrecisionError(`precision must be auto, bf16 or fp32, got ${JSON.stringify(choice)}`);
  }
  if (choice === 'auto') return bf16Available() ? 'bf16' : 'fp32';
  if (choice === 'bf16') native(); // throws with what to do when the backend cannot
  return choice;
}

/** The precision a module computes in: that of its weights (a module whose weights are bf16 multiplies in bf16). */
export function precisionOf(weight: tf.Tensor | null | undefined): Precision {
  return isBf16(weight) ? 'bf16' : 'fp32';
}

/** `tf.matMul(a, b, transposeA, transposeB)` in `precision` (float32 in and out either way). */
export function matMulIn(precision: Precision, a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  return precision === 'bf16' ? matMulBf16(a, b, transposeA, transposeB) : tf.matMul(a, b, transposeA, transposeB);
}
