/**
 * The BFL <- diffusers VAE rename table (src/autoencoder/keys.ts) against the full-size key lists
 * (test/fixtures/keys/{bfl,diffusers}-vae.json, made from the real reference classes), and the model's own spec
 * against the BFL list.
 */
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { AutoEncoder } from '../../src/autoencoder/autoencoder.ts';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';
import { autoEncoderLayout } from '../../src/autoencoder/keys.ts';
import { sourceShapes } from '../../src/weights/layout.ts';
import { detectFormat } from '../../src/weights/detect.ts';

interface KeyList {
  parameters: number;
  tensors: Record<string, number[]>;
}

describe('VAE key table (full-size FLUX autoencoder)', () => {
  const rules = autoEncoderLayout(FLUX_VAE, 'diffusers-vae').rules;
  const ruleFrom = (diffusersKey: string) => rules.find((r) => r.from.includes(diffusersKey));

  it('maps every diffusers key to the BFL key and shape, one to one', async () => {
    const bfl = await loadJsonFixture<KeyList>('keys', 'bfl-vae.json');
    const diff = await loadJsonFixture<KeyList>('keys', 'diffusers-vae.json');
    const mapped = new Map<string, readonly number[]>();
    const sources = new Map<string, number[]>();
    for (const r of rules) {
      expect(r.from, r.key).toHaveLength(1);
      mapped.set(r.key, AutoEncoder.spec(FLUX_VAE)[r.key]!);
      sources.set(r.from[0]!, sourceShapes(r, AutoEncoder.spec(FLUX_VAE)[r.key]!)[0]!);
    }
    expect(sources).toEqual(new Map(Object.entries(diff.tensors)));
    expect(mapped).toEqual(new Map(Object.entries(bfl.tensors)));
    expect(detectFormat(Object.keys(diff.tensors)).format).toBe('diffusers-vae');
    expect(detectFormat(Object.keys(bfl.tensors)).format).toBe('bfl-vae');
  });

  it('the model built from FLUX_VAE expects exactly the BFL ae.safetensors keys and shapes', async () => {
    const bfl = await loadJsonFixture<KeyList>('keys', 'bfl-vae.json');
    const ae = new AutoEncoder(FLUX_VAE); // no weights loaded: nothing allocated
    const expected = ae.parameterShapes();
    expect(expected).toEqual(new Map(Object.entries(bfl.tensors)));
    let n = 0;
    for (const s of expected.values()) n += s.reduce((a, d) => a * d, 1);
    expect(n).toBe(bfl.parameters); // 83,819,683
  });

  it('spot checks: reversed up blocks, shortcut rename, attention reshape', () => {
    expect(ruleFrom('decoder.up_blocks.0.upsamplers.0.conv.weight')?.key).toBe('decoder.up.3.upsample.conv.weight');
    expect(ruleFrom('decoder.up_blocks.3.resnets.0.conv_shortcut.bias')?.key).toBe('decoder.up.0.block.0.nin_shortcut.bias');
    expect(ruleFrom('encoder.mid_block.attentions.0.to_out.0.weight')?.key).toBe('encoder.mid.attn_1.proj_out.weight');
    const q = ruleFrom('encoder.mid_block.attentions.0.to_q.weight')!;
    expect(q.op).toBe('conv1x1');
    expect(sourceShapes(q, [512, 512, 1, 1])).toEqual([[512, 512]]);
    expect(ruleFrom('encoder.mid_block.attentions.0.to_q.bias')?.op).toBe('rename');
    expect(ruleFrom('decoder.up_blocks.4.resnets.0.conv1.weight')).toBeUndefined();
    expect(ruleFrom('quant_conv.weight')).toBeUndefined();
  });
});
