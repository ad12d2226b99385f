/**
 * The models' own specs, and the checkpoint tables architectures.ts derives from them through the layouts' rules,
 * against the state_dict of the real reference classes at full size (test/fixtures/keys/*.json, made by
 * test/reference/gen_keys.py on torch's meta device).
 */
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { AutoEncoder } from '../../src/autoencoder/autoencoder.ts';
import { CLIPTextModel } from '../../src/clip/clip-text-model.ts';
import { T5EncoderModel } from '../../src/t5/t5-encoder-model.ts';
import { fluxParamSpec } from '../../src/transformer/flux.ts';
import { CLIP_L, clipTextConfigFromJson } from '../../src/clip/config.ts';
import { FLUX_DEV, FLUX_SCHNELL, fluxParamsFromDiffusers } from '../../src/transformer/config.ts';
import { FLUX_VAE, autoEncoderParamsFromDiffusers } from '../../src/autoencoder/config.ts';
import { T5_XXL, t5ConfigFromJson } from '../../src/t5/config.ts';
import {
  bflTransformerArchitecture,
  bflVaeArchitecture,
  clipTextArchitecture,
  countParameters,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  type Architecture,
} from '../../src/weights/architectures.ts';

interface KeysFixture {
  config: Record<string, unknown>;
  parameters: number;
  tied?: Record<string, string>;
  tensors: Record<string, number[]>;
}

const sorted = (m: Iterable<[string, number[]]>) => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

async function expectMatches(arch: Architecture, fixture: string, parameters: number) {
  const f = await loadJsonFixture<KeysFixture>('keys', fixture);
  // exact key set and shapes (sorted: the fixture keeps the reference's module order)
  expect(sorted(arch.tensors)).toEqual(sorted(Object.entries(f.tensors)));
  expect(arch.parameters).toBe(f.parameters);
  expect(arch.parameters).toBe(parameters);
  expect(countParameters(arch.tensors)).toBe(parameters);
  for (const [alias, source] of Object.entries(f.tied ?? {})) {
    expect(arch.optional.get(alias)?.shape).toEqual(f.tensors[source]);
  }
  return f;
}

describe('expected architectures match the reference state_dicts (full size)', () => {
  it('BFL transformer, schnell: 776 tensors, 11,891,178,560 parameters', async () => {
    const a = bflTransformerArchitecture(FLUX_SCHNELL);
    await expectMatches(a, 'bfl-transformer-schnell.json', 11_891_178_560);
    expect(a.tensors.size).toBe(776);
  });
  it('BFL transformer, dev (guidance_in)', async () => {
    const a = bflTransformerArchitecture(FLUX_DEV);
    await expectMatches(a, 'bfl-transformer-dev.json', 11_901_408_320);
    expect(a.tensors.get('guidance_in.in_layer.bias')).toEqual([3072]);
  });
  it('diffusers transformer, schnell and dev, from the typed dims and from the config.json', async () => {
    for (const [variant, p, n] of [['schnell', FLUX_SCHNELL, 11_891_178_560], ['dev', FLUX_DEV, 11_901_408_320]] as const) {
      const f = await expectMatches(diffusersTransformerArchitecture(p), `diffusers-transformer-${variant}.json`, n);
      const parsed = fluxParamsFromDiffusers(f.config);
      expect(parsed).toEqual(p);
      await expectMatches(diffusersTransformerArchitecture(parsed), `diffusers-transformer-${variant}.json`, n);
    }
  });
  it('BFL ae and diffusers vae: 83,819,683 parameters, no quant convs', async () => {
    await expectMatches(bflVaeArchitecture(FLUX_VAE), 'bfl-vae.json', 83_819_683);
    const f = await expectMatches(diffusersVaeArchitecture(FLUX_VAE), 'diffusers-vae.json', 83_819_683);
    const parsed = autoEncoderParamsFromDiffusers(f.config);
    expect(parsed).toEqual({ ...FLUX_VAE, resolution: 1024 });
    await expectMatches(diffusersVaeArchitecture(parsed), 'diffusers-vae.json', 83_819_683);
  });
  it('T5-XXL encoder (tied encoder.embed_tokens.weight optional)', async () => {
    const a = t5EncoderArchitecture(T5_XXL);
    const f = await expectMatches(a, 't5-encoder.json', 4_762_310_656);
    expect(t5ConfigFromJson(f.config)).toEqual(T5_XXL);
    expect(a.optional.has('encoder.embed_tokens.weight')).toBe(true);
  });
  it('CLIP-L text encoder', async () => {
    const f = await expectMatches(clipTextArchitecture(CLIP_L), 'clip-text.json', 123_060_480);
    const parsed = clipTextConfigFromJson(f.config);
    // token ids are not in the fixture's config: compare the dims
    expect({ ...parsed, bosTokenId: 0, eosTokenId: 2, padTokenId: 1 }).toEqual(CLIP_L);
  });
});

describe("the modules' own specs are the reference tables (full size)", () => {
  const table = async (fixture: string) => (await loadJsonFixture<KeysFixture>('keys', fixture)).tensors;
  const sortedSpec = (spec: Record<string, readonly number[]>) => sorted(Object.entries(spec).map(([k, s]) => [k, [...s]]));
  it('Flux (BFL keys), schnell and dev', async () => {
    expect(sortedSpec(fluxParamSpec(FLUX_SCHNELL))).toEqual(sorted(Object.entries(await table('bfl-transformer-schnell.json'))));
    expect(sortedSpec(fluxParamSpec(FLUX_DEV))).toEqual(sorted(Object.entries(await table('bfl-transformer-dev.json'))));
  });
  it('AutoEncoder (BFL keys)', async () => {
    expect(sortedSpec(AutoEncoder.spec(FLUX_VAE))).toEqual(sorted(Object.entries(await table('bfl-vae.json'))));
  });
  it('T5EncoderModel and CLIPTextModel (transformers keys)', async () => {
    expect(sortedSpec(T5EncoderModel.spec(T5_XXL))).toEqual(sorted(Object.entries(await table('t5-encoder.json'))));
    expect(sortedSpec(CLIPTextModel.spec(CLIP_L))).toEqual(sorted(Object.entries(await table('clip-text.json'))));
  });
});

describe('config parsers', () => {
  it('fill absent fields with the Python class defaults', () => {
    expect(fluxParamsFromDiffusers({})).toEqual(FLUX_SCHNELL);
    expect(fluxParamsFromDiffusers({ guidance_embeds: true, num_layers: 2, num_single_layers: 1 })).toMatchObject({ depth: 2, depthSingleBlocks: 1, guidanceEmbed: true });
    expect(t5ConfigFromJson({}).feedForwardProj).toBe('relu');
    expect(t5ConfigFromJson({}).isGatedAct).toBe(false);
  });
  it('reject bad values with the file and field named', () => {
    expect(() => fluxParamsFromDiffusers({ num_attention_heads: 'x' }, 'a/config.json')).toThrow(/a\/config\.json: "num_attention_heads" must be a positive integer/);
    expect(() => fluxParamsFromDiffusers({ axes_dims_rope: [16, 56, 50] })).toThrow(/sum to 122, but the head dim is 128/);
    expect(() => fluxParamsFromDiffusers({ patch_size: 2 })).toThrow(/"patch_size" is 2/);
    expect(() => autoEncoderParamsFromDiffusers({ block_out_channels: [128, 200] , down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D'], up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D'] })).toThrow(/not multiples/);
    expect(() => autoEncoderParamsFromDiffusers({ block_out_channels: [128, 256] })).toThrow(/"down_block_types" must be 2x/);
    expect(() => t5ConfigFromJson({ feed_forward_proj: 'gatedx-gelu' })).toThrow(/feed_forward_proj/);
    expect(() => clipTextConfigFromJson([])).toThrow(/must be a JSON object/);
  });
  it('frozen constants', () => {
    expect(Object.isFrozen(FLUX_SCHNELL)).toBe(true);
    expect(Object.isFrozen(FLUX_SCHNELL.axesDim)).toBe(true);
    expect(Object.isFrozen(FLUX_VAE.chMult)).toBe(true);
  });
});
