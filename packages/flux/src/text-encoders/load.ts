/**
 * Loading the text encoders (transformers folders: a config.json plus one .safetensors file or shards + index):
 * one loader for both, over the models' layouts (clip/keys.ts, t5/keys.ts) and CheckpointWeights.
 *
 * Streamed (default): each layer's tensors are read, converted to float32, uploaded, used and disposed, so only one
 * layer is on the device (T5-XXL: ~0.8 GB float32 per block instead of 19 GB). Resident: each tensor is built once,
 * on first use, and kept until `close()`. Both give identical outputs. Either way embedding rows are gathered on the
 * host by byte range: the 32128 x 4096 T5 table is never uploaded nor converted whole.
 */
import { dirname, join } from 'node:path';
import { CLIPTextModel } from '../clip/clip-text-model.ts';
import { clipLayout } from '../clip/keys.ts';
import type { Residency } from '../runtime/backend.ts';
import { isDir, readJson } from '../shared/files.ts';
import { T5EncoderModel } from '../t5/t5-encoder-model.ts';
import { t5Layout } from '../t5/keys.ts';
import { clipTextConfigFromJson, type ClipTextConfig } from '../clip/config.ts';
import { t5ConfigFromJson, type T5Config } from '../t5/config.ts';
import { openCheckpoint } from '../weights/checkpoint.ts';
import { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import { locateWeights, type ModelKind, type WeightsLocation } from '../weights/detect.ts';
import type { CheckpointLayout } from '../weights/layout.ts';
import { TextEncoderWeightsError } from './token-ids.ts';

export interface LoadOptions {
  residency?: Residency;
}

export interface LoadedTextEncoder<M, C> {
  model: M;
  config: C;
  weights: CheckpointWeights;
  /** Frees kept tensors and closes the checkpoint. */
  close(): Promise<void>;
}

/**
 * `where`: the encoder's folder (or its weights file / index), or a location model discovery made (format and
 * prefix from the header). The config.json beside the weights gives the dims.
 */
async function loadTextEncoder<M, C>(
  where: string | WeightsLocation,
  kind: Extract<ModelKind, 't5' | 'clip'>,
  parse: (json: unknown, source: string) => C,
  layout: (c: C) => CheckpointLayout,
  build: (c: C, w: CheckpointWeights) => M,
  opts: LoadOptions,
): Promise<LoadedTextEncoder<M, C>> {
  const folder = typeof where === 'string' ? (isDir(where) || !/\.(safetensors|json)$/.test(where) ? where : dirname(where)) : dirname(where.path);
  const configPath = typeof where === 'string' ? join(folder, 'config.json') : (where.config ?? join(folder, 'config.json'));
  const config = parse(
    readJson(configPath, `pass the text encoder folder (text_encoder/ or text_encoder_2/ of a diffusers FLUX.1 download)`, (code, message) => new TextEncoderWeightsError(message)),
    configPath,
  );
  const location = typeof where === 'string' ? locateWeights(where, kind).location : where;
  const ckpt = await openCheckpoint(location.path);
  try {
    const weights = new CheckpointWeights(ckpt, layout(config), { residency: opts.residency, prefix: location.prefix });
    return {
      model: build(config, weights),
      config,
      weights,
      close: async () => {
        weights.dispose();
        await ckpt.close();
      },
    };
  } catch (e) {
    await ckpt.close().catch(() => undefined);
    throw e;
  }
}

/** `text_encoder_2/`: T5Config config.json + model shards (+ index). */
export function loadT5EncoderModel(where: string | WeightsLocation, opts: LoadOptions = {}): Promise<LoadedTextEncoder<T5EncoderModel, T5Config>> {
  return loadTextEncoder(where, 't5', t5ConfigFromJson, t5Layout, (c, w) => new T5EncoderModel(c, w), opts);
}

/** `text_encoder/`: CLIPTextConfig config.json + model.safetensors (keys with or without `text_model.`). */
export function loadClipTextModel(where: string | WeightsLocation, opts: LoadOptions = {}): Promise<LoadedTextEncoder<CLIPTextModel, ClipTextConfig>> {
  return loadTextEncoder(where, 'clip', clipTextConfigFromJson, clipLayout, (c, w) => new CLIPTextModel(c, w), opts);
}
