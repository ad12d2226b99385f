// Public API of @flux-ts/flux. Deeper modules stay importable by path (tests, benchmarks), but this is the surface.

// The tfjs instance the models run on: use this one in stage-API code (a second copy of tfjs-core would hold its
// own backends and tensors).
export * as tf from '@tensorflow/tfjs-core';
// The sampler's pieces the stage API needs, and the one abort error, from the same copy of @flux-ts/core.
export {
  AbortError,
  denoise,
  denoisedEstimate,
  FluxError,
  getSchedule,
  imageIds,
  imageSeqLen,
  IMAGE_SIDE,
  latentShape,
  packLatents,
  textIds,
  TorchGenerator,
  unpackLatents,
  type DenoiseStep,
} from '@flux-ts/core';

// The pipeline: find a model, generate images.
export {
  FluxPipeline,
  GenerateError,
  LIBRARY_MIN_SIDE,
  type GenerateOptions,
  type GenerateResult,
  type GeneratedImage,
  type LoadOptions,
  type PipelineOptions,
  type PreviewImage,
  type PreviewMode,
  type PreviewOptions,
  type StageTimings,
  type StepCallback,
  type StepInfo,
  type StepPreview,
} from './pipeline/pipeline.ts';
export type { ProgressCallback, ProgressEvent, ProgressUnit, Stage } from './pipeline/progress.ts';
export { evaluateLatentRgb, fitLatentRgb, projectLatents, type FitOptions, type LatentRgbFit, type LatentRgbProjection } from './pipeline/latent-rgb.ts';
export { estimateGenerationMemory, type GenerationMemory, type GenerationMemoryInput } from './pipeline/memory.ts';
export {
  cachedSnapshot,
  diffusersLocation,
  locateModel,
  locateTransformer,
  ModelNotFoundError,
  readSchedulerConfig,
  type LocateOptions,
  type ModelLocation,
  type TransformerLocation,
} from './pipeline/model-location.ts';
export {
  a1111Parameters,
  FLUX_TS_VERSION,
  jpegCommentsFor,
  MetadataError,
  pngTextFor,
  readGenerationMetadata,
  type GenerationMetadata,
} from './pipeline/metadata.ts';
export * from './image/index.ts';

// The models, their configs and loaders.
export {
  FLUX_DEV,
  FLUX_SCHNELL,
  fluxParamsFromDiffusers,
  fluxParamsFromShapes,
  fluxVariantParams,
  headDim,
  mlpHiddenDim,
  validateFluxParams,
  type FluxParams,
  type FluxVariant,
} from './transformer/config.ts';
export { autoHeadChunk, Flux, FluxInputError, fluxParamSpec, type FluxInputs, type FluxOptions } from './transformer/flux.ts';
export { defaultResidency, loadTransformer, openTransformerWeights, RESIDENCIES, type LoadTransformerOptions } from './transformer/load.ts';
export { transformerLayout, TransformerWeightsError, type TransformerFormat } from './transformer/keys.ts';
export { autoEncoderParamsFromDiffusers, FLUX_VAE, type AutoEncoderParams } from './autoencoder/config.ts';
export {
  AutoEncoder,
  imageToRgbBytes,
  paramLeaves,
  rgbBytesToImage,
  VaeInputError,
  VaeWeightsError,
  type DecodeOptions,
  type EncodeOptions,
  type NoiseSource,
  type TilePlan,
  type TilingChoice,
} from './autoencoder/autoencoder.ts';
export { autoEncoderFromWeights, loadAutoEncoder, type LoadedAutoEncoder } from './autoencoder/load.ts';
export { autoEncoderLayout } from './autoencoder/keys.ts';
export { estimateDecodeMemory, estimateEncodeMemory } from './autoencoder/memory.ts';
export { T5_XXL, t5ConfigFromJson, type T5Config } from './t5/config.ts';
export { T5EncoderModel } from './t5/t5-encoder-model.ts';
export { CLIP_L, clipTextConfigFromJson, type ClipTextConfig } from './clip/config.ts';
export { CLIPTextModel } from './clip/clip-text-model.ts';
export { loadClipTextModel, loadT5EncoderModel, type LoadedTextEncoder } from './text-encoders/load.ts';
export { TextEncoders, type PromptTokenizers } from './text-encoders/text-encoders.ts';
export { PromptEmbeddingCache, type PromptEmbeddings } from './text-encoders/prompt-cache.ts';
export { TextEncoderInputError, TextEncoderWeightsError } from './text-encoders/token-ids.ts';
export { ConfigError } from './shared/config-json.ts';

// Tokenizers.
export { loadTokenizers, TokenizerError, type FluxTokenizers, type TokenizedPrompt } from './text-encoders/tokenizers.ts';
export { CLIPTokenizer } from './clip/tokenizer.ts';
export { loadClipTokenizer } from './clip/load-tokenizer.ts';
export { T5Tokenizer } from './t5/tokenizer.ts';
export { loadT5Tokenizer } from './t5/load-tokenizer.ts';

// Weights: safetensors, checkpoints, the loading spine, inspection.
export {
  decodeSafetensors,
  DTYPES,
  DTYPE_SIZES,
  encodeSafetensors,
  loadSafetensors,
  SafetensorsError,
  SafetensorsFile,
  toFloat32,
  writeSafetensors,
  writeSparseSafetensors,
  type Dtype,
  type NamedTensor,
  type TensorInfo,
} from './weights/safetensors.ts';
export {
  memoryCheckpoint,
  openCheckpoint,
  readCheckpointHeader,
  type Checkpoint,
  type TensorReader,
  type WeightValue,
} from './weights/checkpoint.ts';
export { CheckpointWeights, type CheckpointWeightsOptions } from './weights/checkpoint-weights.ts';
export type { CheckpointLayout, ModuleRename, Rule, WeightsFormat } from './weights/layout.ts';
export { WeightsError } from './weights/validate.ts';
export { detectFormat, locateWeights, type Detection, type WeightsLocation } from './weights/detect.ts';
export {
  architectureOf,
  bflTransformerArchitecture,
  bflVaeArchitecture,
  clipTextArchitecture,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  type Architecture,
} from './weights/architectures.ts';
export { formatInspectReport, inspectCheckpoint, inspectPath, type InspectReport } from './weights/inspect.ts';

// Tensor backends, ops.
export {
  BackendError,
  currentBackend,
  ensureBackend,
  initBackend,
  listBackends,
  parseBackendChoice,
  type BackendChoice,
  type BackendInfo,
  type BackendName,
  type Residency,
} from './runtime/backend.ts';
export { bf16Available, nativeHandleCount, PRECISION_CHOICES, PrecisionError, resolvePrecision, type Precision, type PrecisionChoice } from './runtime/bf16.ts';
export { attention, rope, timestepEmbedding, type Rope } from './math.ts';

// Hugging Face hub downloads.
export { DEFAULT_REPO, downloadRepo, type DownloadOptions, type DownloadResult } from './hub/download.ts';
export { hfCacheDir, snapshotPath } from './hub/cache.ts';
export { HubError, hubEndpoint } from './hub/http.ts';
export { createProgressReporter } from './hub/progress.ts';
export { formatBytes, formatDuration } from './format.ts';
