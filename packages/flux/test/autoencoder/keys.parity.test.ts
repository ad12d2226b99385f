/**
 * The BFL <-> diffusers VAE key table against the full-size key lists (test/fixtures/keys/{bfl,diffusers}-vae.json,
 * made from the real reference classes), and the model's expected parameters against the BFL list.
 */
import { describe, expect, it } from 'vitest';
import { loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { FLUX_VAE } from '../../src/transformer/config.ts';
import { AutoEncoder } from '../../src/autoencoder/autoencoder.ts';
import {
  bflToDiffusersVaeKey,
  diffusersToBflVaeKey,
  diffusersToBflVaeShape,
  isDiffusersVaeNaming,
} from '../../src/autoencoder/keys.ts';

interface KeyList {
  parameters: number;
  tensors: Record<string, number[]>;
}

describe('VAE key table (full-size FLUX autoencoder)', () => {
  it('maps every diffusers key to the BFL key and shape, and back', async () => {
    const bfl = await loadJsonFixture<KeyList>('keys', 'bfl-vae.json');
    const diff = await loadJsonFixture<KeyList>('keys', 'diffusers-vae.json');
    const mapped = new Map<string, readonly number[]>();
    for (const [k, shape] of Object.entries(diff.tensors)) {
      const b = diffusersToBflVaeKey(k, 4);
      expect(b, k).not.toBeNull();
      mapped.set(b!, diffusersToBflVaeShape(k, shape, 4));
      expect(bflToDiffusersVaeKey(b!, 4)).toBe(k);
    }
    expect(new Map(Object.entries(bfl.tensors))).toEqual(mapped);
    expect(isDiffusersVaeNaming(Object.keys(diff.tensors))).toBe(true);
    expect(isDiffusersVaeNaming(Object.keys(bfl.tensors))).toBe(false);
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
    expect(diffusersToBflVaeKey('decoder.up_blocks.0.upsamplers.0.conv.weight', 4)).toBe('decoder.up.3.upsample.conv.weight');
    expect(diffusersToBflVaeKey('decoder.up_blocks.3.resnets.0.conv_shortcut.bias', 4)).toBe('decoder.up.0.block.0.nin_shortcut.bias');
    expect(diffusersToBflVaeKey('encoder.mid_block.attentions.0.to_out.0.weight', 4)).toBe('encoder.mid.attn_1.proj_out.weight');
    expect(diffusersToBflVaeShape('encoder.mid_block.attentions.0.to_q.weight', [512, 512], 4)).toEqual([512, 512, 1, 1]);
    expect(diffusersToBflVaeShape('encoder.mid_block.attentions.0.to_q.bias', [512], 4)).toEqual([512]);
    expect(diffusersToBflVaeKey('decoder.up_blocks.4.resnets.0.conv1.weight', 4)).toBeNull();
    expect(diffusersToBflVaeKey('quant_conv.weight', 4)).toBeNull();
  });
});
