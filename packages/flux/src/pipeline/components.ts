/**
 * Loading each pipeline stage from a ModelLocation, one at a time: the text encoders (+ tokenizers), the
 * transformer (streamed per block, or resident), the autoencoder. Every loader returns something with a
 * `close()` that frees its tensors and files, so a pipeline can hold one stage at a time.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FluxError, type FluxVariant } from '@flux-ts/core';
import type { AutoEncoder } from '../autoencoder/autoencoder.ts';
import { CLIPTokenizer } from '../clip/tokenizer.ts';
import { autoEncoderParamsFromDiffusers, fluxParamsFromDiffusers, fluxVariantParams, type FluxParams } from '../transformer/config.ts';
import type { ModelLocation } from './model-location.ts';
import { ModelNotFoundError } from './model-location.ts';
import { T5Tokenizer } from '../t5/tokenizer.ts';
import { loadClipTokenizer, loadT5Tokenizer } from '../text-encoders/tokenizers.ts';
import { TextEncoders, type PromptTokenizers } from '../text-encoders/text-encoders.ts';
import type { Residency } from '../runtime/backend.ts';
import type { Flux } from '../transformer/flux.ts';
import { loadTransformer } from '../transformer/load.ts';
import { loadAutoEncoder } from '../autoencoder/load.ts';
import { openCheckpoint } from '../weights/checkpoint.ts';

async function readText(path: string, component: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new ModelNotFoundError(`${component} is missing: ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)}); download the complete model (pnpm flux download)`, 'MODEL_COMPONENT_MISSING');
  }
}

async function readJson(path: string, component: string): Promise<unknown> {
  const raw = await readText(path, component);
  try {
    return JSON.parse(raw);
  } catch {
    throw new ModelNotFoundError(`${component} is corrupt: ${path} is not valid JSON; download the model again (pnpm flux download)`, 'MODEL_COMPONENT_CORRUPT');
  }
}

/** Runs `fn`, turning any non-FluxError (a bad file deep in a parser) into one line naming the component. */
async function named<T>(component: string, path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof FluxError) throw e;
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new ModelNotFoundError(`${component} could not be loaded from ${path}: ${msg}; download it again (pnpm flux download)`, 'MODEL_COMPONENT_CORRUPT');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Tokenizers (tokenizer/: vocab.json + merges.txt; tokenizer_2/: tokenizer.json, as the FLUX.1 repositories ship them)
// ---------------------------------------------------------------------------------------------------------------------

/** The CLIP and T5 tokenizers of a diffusers FLUX.1 folder, as the PromptTokenizers the text encoders take. */
export async function loadPromptTokenizers(root: string): Promise<PromptTokenizers & { clipTokenizer: CLIPTokenizer; t5Tokenizer: T5Tokenizer }> {
  const clipDir = join(root, 'tokenizer');
  const clipTokenizer = await named('tokenizer (CLIP)', clipDir, () => loadClipTokenizer(clipDir));
  const t5Dir = join(root, 'tokenizer_2');
  const t5Tokenizer = await named('tokenizer_2 (T5)', t5Dir, () => loadT5Tokenizer(t5Dir));
  return {
    clipTokenizer,
    t5Tokenizer,
    clip: (prompt, maxLength) => clipTokenizer.tokenize(prompt, maxLength).ids,
    t5: (prompt, maxLength) => t5Tokenizer.tokenize(prompt, maxLength).ids,
  };
}

/** text_encoder/ + text_encoder_2/ and the tokenizers, streamed per layer by default. */
export async function openTextEncoders(loc: ModelLocation, residency: Residency = 'streamed'): Promise<TextEncoders> {
  const tokenizers = await loadPromptTokenizers(loc.textEncoderRoot);
  return named('text encoders', loc.textEncoderRoot, () => TextEncoders.open(loc.textEncoderRoot, tokenizers, { residency, cacheCapacity: 0 }));
}

// ---------------------------------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------------------------------

export interface OpenTransformer {
  model: Flux;
  variant: FluxVariant;
  close(): Promise<void>;
}

/**
 * transformer/ (diffusers, config.json) or a BFL file (built-in schnell/dev config, variant from its keys), loaded by
 * transformer/load.ts: 'auto' = resident on a native GPU backend, streamed per block elsewhere.
 */
export async function openTransformer(loc: ModelLocation, residency: Residency | 'auto' = 'auto'): Promise<OpenTransformer> {
  return named('transformer', loc.transformer, async () => {
    const ckpt = await openCheckpoint(loc.transformer);
    try {
      let params: FluxParams;
      if (loc.transformerConfig) {
        params = fluxParamsFromDiffusers(await readJson(loc.transformerConfig, 'transformer/config.json'), loc.transformerConfig);
      } else {
        const dev = [...ckpt.tensors.keys()].some((k) => k.endsWith('guidance_in.in_layer.weight'));
        params = fluxVariantParams(dev ? 'dev' : 'schnell');
      }
      const variant: FluxVariant = params.guidanceEmbed ? 'dev' : 'schnell';
      const model = await loadTransformer(ckpt, params, { residency });
      return {
        model,
        variant,
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

// ---------------------------------------------------------------------------------------------------------------------
// Autoencoder
// ---------------------------------------------------------------------------------------------------------------------

/** vae/ (diffusers, config.json) or ae.safetensors (built-in FLUX VAE config), by vae.ts. */
export async function openAutoEncoder(loc: ModelLocation): Promise<AutoEncoder> {
  return named('vae', loc.vae, async () => (await loadAutoEncoder(loc.vae)).ae);
}

/**
 * Opens every weight file's header (no tensor data) and reads every config, so that a missing or corrupt
 * component is reported before any stage runs. Throws the first problem found, naming the component.
 */
export async function verifyComponents(loc: ModelLocation): Promise<void> {
  const parts: [string, string][] = [
    ['text_encoder (CLIP)', join(loc.textEncoderRoot, 'text_encoder')],
    ['text_encoder_2 (T5)', join(loc.textEncoderRoot, 'text_encoder_2')],
    ['transformer', loc.transformer],
    ['vae', loc.vae],
  ];
  for (const [name, path] of parts) {
    await named(name, path, async () => {
      const ckpt = await openCheckpoint(path);
      await ckpt.close();
    });
  }
  await loadPromptTokenizers(loc.textEncoderRoot);
  if (loc.transformerConfig) fluxParamsFromDiffusers(await readJson(loc.transformerConfig, 'transformer/config.json'), loc.transformerConfig);
  if (loc.vaeConfig) autoEncoderParamsFromDiffusers(await readJson(loc.vaeConfig, 'vae/config.json'), loc.vaeConfig);
}
