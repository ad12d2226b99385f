/**
 * Loading each pipeline stage from a ModelLocation, one at a time: the text encoders (+ tokenizers), the
 * transformer (streamed per block, or resident), the autoencoder. Formats, prefixes and dims are the location's
 * (decided from the headers by model-location.ts); every loader returns something with a `close()` that frees its
 * tensors and files, so a pipeline can hold one stage at a time.
 */
import { FluxError } from '@flux-ts/core';
import type { AutoEncoder } from '../autoencoder/autoencoder.ts';
import { autoEncoderLayout, type AutoEncoderFormat } from '../autoencoder/keys.ts';
import { loadAutoEncoder } from '../autoencoder/load.ts';
import { clipLayout } from '../clip/keys.ts';
import type { Residency } from '../runtime/backend.ts';
import type { Precision } from '../runtime/bf16.ts';
import { readJson } from '../shared/files.ts';
import { t5Layout } from '../t5/keys.ts';
import { autoEncoderParamsFromDiffusers, FLUX_VAE } from '../autoencoder/config.ts';
import { clipTextConfigFromJson } from '../clip/config.ts';
import { t5ConfigFromJson } from '../t5/config.ts';
import { TextEncoders } from '../text-encoders/text-encoders.ts';
import { loadTokenizers } from '../text-encoders/tokenizers.ts';
import type { Flux } from '../transformer/flux.ts';
import { transformerLayout, type TransformerFormat } from '../transformer/keys.ts';
import { loadTransformer } from '../transformer/load.ts';
import { openCheckpoint } from '../weights/checkpoint.ts';
import { CheckpointWeights } from '../weights/checkpoint-weights.ts';
import type { CheckpointLayout } from '../weights/layout.ts';
import { ModelNotFoundError, type ModelLocation } from './model-location.ts';

/** Runs `fn`, turning any non-FluxError (a bad file deep in a parser) into one line naming the component. */
async function named<T>(component: string, path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof FluxError) throw e;
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new ModelNotFoundError(`${component} could not be loaded from ${path}: ${msg}; download it again (flux-ts download)`, 'MODEL_COMPONENT_CORRUPT');
  }
}

/** text_encoder/ + text_encoder_2/ and the tokenizers, streamed per layer by default. */
export async function openTextEncoders(loc: ModelLocation, residency: Residency = 'streamed', precision: Precision = 'fp32'): Promise<TextEncoders> {
  const tk = await named('tokenizers', loc.textEncoderRoot, () => loadTokenizers(loc.textEncoderRoot, { t5Length: 512 }));
  const tokenizers = {
    clip: (prompt: string, maxLength: number) => tk.clip.encode(prompt, maxLength),
    t5: (prompt: string, maxLength: number) => tk.t5.encode(prompt, maxLength),
  };
  return named('text encoders', loc.textEncoderRoot, () => TextEncoders.open({ clip: loc.clip, t5: loc.t5 }, tokenizers, { residency, precision, cacheCapacity: 0 }));
}

export interface OpenTransformer {
  model: Flux;
  close(): Promise<void>;
}

/** The transformer at the location (its format, prefix and dims as found): 'auto' = resident on a native GPU backend, streamed elsewhere. */
export async function openTransformer(
  loc: ModelLocation,
  residency: Residency | 'auto' = 'auto',
  onLoadProgress?: (done: number, total: number) => void,
  precision: Precision = 'fp32',
): Promise<OpenTransformer> {
  const t = loc.transformer;
  return named('transformer', t.path, async () => {
    const ckpt = await openCheckpoint(t.path);
    try {
      const model = await loadTransformer(ckpt, t.params, { residency, format: t.format as TransformerFormat, prefix: t.prefix, onLoadProgress, precision });
      return {
        model,
        close: async () => {
          model.dispose();
          await ckpt.close();
        },
      };
    } catch (e) {
      await ckpt.close().catch(() => undefined);
      throw e;
    }
  });
}

/** The autoencoder at the location (vae/ with its config.json, or BFL's ae.safetensors with FLUX_VAE dims). */
export async function openAutoEncoder(loc: ModelLocation, onProgress?: (done: number, total: number) => void, precision: Precision = 'fp32'): Promise<AutoEncoder> {
  return named('vae', loc.vae.path, async () => (await loadAutoEncoder(loc.vae, { onProgress, precision })).ae);
}

/**
 * Checks every component against its model before anything runs: each checkpoint's header against the layout its
 * config gives (names and shapes, the check CheckpointWeights makes), and the tokenizers. No tensor data is read.
 * Throws the first problem found, naming the component.
 */
export async function verifyComponents(loc: ModelLocation): Promise<void> {
  const cfg = (path: string | undefined, what: string) => readJson(path!, `restore the ${what} config.json of the model`);
  const parts: [string, string, () => CheckpointLayout, string][] = [
    ['text_encoder (CLIP)', loc.clip.path, () => clipLayout(clipTextConfigFromJson(cfg(loc.clip.config, 'text_encoder'), loc.clip.config)), loc.clip.prefix],
    ['text_encoder_2 (T5)', loc.t5.path, () => t5Layout(t5ConfigFromJson(cfg(loc.t5.config, 'text_encoder_2'), loc.t5.config)), loc.t5.prefix],
    ['transformer', loc.transformer.path, () => transformerLayout(loc.transformer.params, loc.transformer.format as TransformerFormat), loc.transformer.prefix],
    [
      'vae',
      loc.vae.path,
      () => autoEncoderLayout(loc.vae.config ? autoEncoderParamsFromDiffusers(cfg(loc.vae.config, 'vae'), loc.vae.config) : FLUX_VAE, loc.vae.format as AutoEncoderFormat),
      loc.vae.prefix,
    ],
  ];
  for (const [name, path, layout, prefix] of parts) {
    await named(name, path, async () => {
      const ckpt = await openCheckpoint(path);
      try {
        new CheckpointWeights(ckpt, layout(), { prefix }).dispose();
      } finally {
        await ckpt.close();
      }
    });
  }
  await named('tokenizers', loc.textEncoderRoot, () => loadTokenizers(loc.textEncoderRoot, { t5Length: 512 }));
}
