/** PNG generation metadata (src/pipeline/metadata.ts): the JSON chunk, the A1111 parameters fallback, typed errors. */
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../src/image/index.ts';
import { a1111Parameters, readGenerationMetadata, type GenerationMetadata } from '../../src/pipeline/metadata.ts';

describe('PNG generation metadata', () => {
  const m: GenerationMetadata = {
    prompt: 'a cat, "quoted", 猫', seed: 42, steps: 4, guidance: 3.5, width: 512, height: 256, model: 'black-forest-labs/FLUX.1-schnell',
    variant: 'schnell', max_sequence_length: 256, num_images: 1, index: 0, version: '0.1.0',
  };
  const img = { width: 2, height: 2, data: new Uint8Array(12) };

  it('reads the JSON chunk back exactly', () => {
    expect(readGenerationMetadata(encodePng(img, { 'flux-ts': JSON.stringify(m), parameters: a1111Parameters(m) }))).toEqual(m);
  });

  it('falls back to the A1111 parameters chunk', () => {
    const got = readGenerationMetadata(encodePng(img, { parameters: a1111Parameters({ ...m, strength: 0.6 }) }));
    expect(got).toMatchObject({ prompt: m.prompt, seed: 42, steps: 4, width: 512, height: 256, guidance: 3.5, strength: 0.6 });
  });

  it('a PNG without parameters is a typed error', () => {
    expect(() => readGenerationMetadata(encodePng(img), 'x.png')).toThrow(/x\.png has no generation parameters/);
  });
});
