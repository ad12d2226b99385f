import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { fixturePath, loadFixture } from '../../../../test/harness/fixtures.ts';
import { decodeImage, encodePng, readPngText, resizeLanczos, ImageError } from '../../src/image/index.ts';

describe('PNG text chunks', () => {
  const img = { width: 3, height: 2, data: Uint8Array.from({ length: 18 }, (_, i) => i * 13) };

  it('round-trips pixels and Latin-1 / UTF-8 text', () => {
    const text = { parameters: 'a cat\nSteps: 4, Seed: 42', 'flux-ts': JSON.stringify({ prompt: 'un café ☕ 猫', seed: 42 }) };
    const png = encodePng(img, text);
    expect(readPngText(png)).toEqual(text);
    const back = decodeImage(png);
    expect(back.width).toBe(3);
    expect(back.height).toBe(2);
    expect([...back.data]).toEqual([...img.data]);
    // another decoder (pngjs itself) accepts the file with the extra chunks: CRCs are right
    expect(PNG.sync.read(png).width).toBe(3);
    // Latin-1 goes to tEXt, anything else to iTXt
    const s = png.toString('latin1');
    expect(s.indexOf('tEXtparameters')).toBeGreaterThan(0);
    expect(s.indexOf('iTXtflux-ts')).toBeGreaterThan(0);
  });

  it('rejects non-images with a typed error', () => {
    expect(() => decodeImage(new Uint8Array([1, 2, 3, 4]))).toThrow(ImageError);
    expect(() => readPngText(new Uint8Array([1, 2, 3]))).toThrow(/not a PNG/);
  });

  it('decodes JPEG to RGB', () => {
    const rgba = new Uint8Array(16 * 8 * 4).fill(200);
    const enc = jpeg.encode({ width: 16, height: 8, data: rgba }, 100);
    const d = decodeImage(enc.data);
    expect([d.width, d.height, d.data.length]).toEqual([16, 8, 16 * 8 * 3]);
    for (const v of d.data) expect(Math.abs(v - 200)).toBeLessThanOrEqual(2);
  });
});

describe('resizeLanczos = PIL Image.resize(LANCZOS)', async () => {
  const fx = await loadFixture('pipeline', 'resize.safetensors');
  const input = decodeImage(await readFile(fixturePath('pipeline', 'input.png')));

  it('decodes the committed input PNG as PIL does', () => {
    expect([...input.data]).toEqual([...fx.input!.data]);
  });

  for (const [w, h] of [[64, 64], [48, 80], [32, 32], [96, 40], [60, 80], [100, 90], [50, 30], [144, 57]] as const) {
    it(`${input.width}x${input.height} -> ${w}x${h}`, () => {
      const out = resizeLanczos(input, w, h);
      const want = fx[`resize_${w}x${h}`]!.data;
      let diff = 0;
      for (let i = 0; i < want.length; i++) if (out.data[i] !== want[i]) diff++;
      expect(diff).toBe(0);
    });
  }
});
