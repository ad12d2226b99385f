/**
 * Expected checkpoint tables (key -> shape) of each FLUX.1 component and format, derived from the models' own specs
 * and the layouts' rules (weights/layout.ts): no key is written here. test/weights/architectures.parity.test.ts
 * checks each against the state_dict of the real reference classes at full size (test/fixtures/keys/*.json, made
 * by test/reference/gen_keys.py on torch's meta device). Linear weights are [out, in], convs [out, in, kh, kw].
 */
import { autoEncoderLayout } from '../autoencoder/keys.ts';
import { clipLayout } from '../clip/keys.ts';
import { t5Layout } from '../t5/keys.ts';
import { transformerLayout } from '../transformer/keys.ts';
import { CLIP_L, type ClipTextConfig } from '../clip/config.ts';
import { FLUX_VAE, type AutoEncoderParams } from '../autoencoder/config.ts';
import { T5_XXL, type T5Config } from '../t5/config.ts';
import { fluxVariantParams, type FluxParams, type FluxVariant } from '../transformer/config.ts';
import { checkpointTable, type CheckpointLayout, type WeightsFormat } from './layout.ts';

export type ShapeTable = Map<string, number[]>;

export interface Architecture {
  format: WeightsFormat;
  /** Every tensor a complete checkpoint holds. */
  tensors: ShapeTable;
  /** Tensors a file MAY also hold (tied copies, legacy buffers): neither missing nor unexpected when present. */
  optional: Map<string, { shape: number[]; note: string }>;
  /** Element count of `tensors`. */
  parameters: number;
}

export function countParameters(tensors: ReadonlyMap<string, readonly number[]>): number {
  let n = 0;
  for (const shape of tensors.values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** The checkpoint keys and shapes a layout reads: each rule's sources with the shapes that build the spec. */
export function architectureOf(layout: CheckpointLayout): Architecture {
  const tensors = checkpointTable(layout);
  const optional = new Map([...(layout.optional ?? [])].map(([k, v]) => [k, { shape: [...v.shape], note: v.note }]));
  return { format: layout.format, tensors, optional, parameters: countParameters(tensors) };
}

/** BFL `Flux` (`flux1-schnell.safetensors`). */
export function bflTransformerArchitecture(p: FluxParams): Architecture {
  return architectureOf(transformerLayout(p, 'bfl-transformer'));
}

/** diffusers `FluxTransformer2DModel` (`transformer/`). */
export function diffusersTransformerArchitecture(p: FluxParams): Architecture {
  return architectureOf(transformerLayout(p, 'diffusers-transformer'));
}

/** BFL `AutoEncoder` (`ae.safetensors`). */
export function bflVaeArchitecture(p: AutoEncoderParams): Architecture {
  return architectureOf(autoEncoderLayout(p, 'bfl-vae'));
}

/** diffusers `AutoencoderKL` (`vae/`). */
export function diffusersVaeArchitecture(p: AutoEncoderParams): Architecture {
  return architectureOf(autoEncoderLayout(p, 'diffusers-vae'));
}

/** transformers `T5EncoderModel` (`text_encoder_2/`). */
export function t5EncoderArchitecture(c: T5Config): Architecture {
  return architectureOf(t5Layout(c));
}

/** transformers `CLIPTextModel` (`text_encoder/`), keys without the `text_model.` prefix of transformers 4.x files. */
export function clipTextArchitecture(c: ClipTextConfig): Architecture {
  return architectureOf(clipLayout(c));
}

/** The full-size FLUX.1 architecture of a format (transformers: by variant). */
export function defaultArchitecture(format: WeightsFormat, variant: FluxVariant = 'schnell'): Architecture {
  switch (format) {
    case 'bfl-transformer':
    case 'diffusers-transformer':
      return architectureOf(transformerLayout(fluxVariantParams(variant), format));
    case 'bfl-vae':
    case 'diffusers-vae':
      return architectureOf(autoEncoderLayout(FLUX_VAE, format));
    case 't5-encoder':
      return t5EncoderArchitecture(T5_XXL);
    case 'clip-text':
      return clipTextArchitecture(CLIP_L);
  }
}
