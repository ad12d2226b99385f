// Public API of @flux-ts/flux: weights I/O, configs, inspection, tensor backends, ops.
export * from './weights/safetensors.ts';
export * from './weights/checkpoint.ts';
export * from './weights/architectures.ts';
export * from './weights/detect.ts';
export * from './configs.ts';
export * from './inspect.ts';
export * from './runtime/backend.ts';
export * from './math.ts';
export * from './nn/linear.ts';
export * from './nn/layer-norm.ts';
export * from './nn/rms-norm.ts';
export * from './nn/gelu.ts';
