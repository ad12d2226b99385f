/**
 * The transformer's dims read from a BFL checkpoint's header shapes (fluxParamsFromShapes, as ComfyUI and
 * stable-diffusion.cpp detect them): full-size schnell and dev from the real key tables, the tiny fixtures with
 * their RoPE axes given, and the errors that say what the shapes cannot tell.
 */
import { describe, expect, it } from 'vitest';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { ConfigError } from '../../src/shared/config-json.ts';
import { FLUX_DEV, FLUX_SCHNELL, fluxParamsFromShapes } from '../../src/transformer/config.ts';
import { bflTransformerArchitecture } from '../../src/weights/architectures.ts';
import { readCheckpointHeader } from '../../src/weights/checkpoint.ts';
import { CONFIGS, loadParams } from './helpers.ts';

const shapes = (t: ReadonlyMap<string, readonly number[]>) => new Map([...t].map(([k, shape]) => [k, { shape }]));

describe('fluxParamsFromShapes', () => {
  it('reads full-size schnell and dev (head dim 128: FLUX.1 RoPE axes)', () => {
    expect(fluxParamsFromShapes(shapes(bflTransformerArchitecture(FLUX_SCHNELL).tensors))).toEqual(FLUX_SCHNELL);
    expect(fluxParamsFromShapes(shapes(bflTransformerArchitecture(FLUX_DEV).tensors))).toEqual(FLUX_DEV);
  });

  it.each(CONFIGS)('reads the tiny %s fixture with its RoPE axes given', async (name) => {
    const p = await loadParams(name);
    const header = readCheckpointHeader(fixturePath('transformer', `${name}.bfl.safetensors`));
    expect(fluxParamsFromShapes(header.tensors, { axesDim: p.axesDim })).toEqual(p);
    expect(() => fluxParamsFromShapes(header.tensors, { source: 'tiny.safetensors' })).toThrow(ConfigError);
    expect(() => fluxParamsFromShapes(header.tensors, { source: 'tiny.safetensors' })).toThrow(/tiny\.safetensors: has a head dim of 16, not FLUX\.1's 128/);
  });

  it('names a key it needs that the header lacks', () => {
    const t = new Map(bflTransformerArchitecture(FLUX_SCHNELL).tensors);
    t.delete('img_in.weight');
    expect(() => fluxParamsFromShapes(shapes(t), { source: 'x.safetensors' })).toThrow(/x\.safetensors: has no img_in\.weight: its dims cannot be read from the header/);
  });
});
