/**
 * Image headers: format and declared size read without decoding, so a decompression bomb is refused before any
 * pixel memory exists. Checked against files this library and pngjs / jpeg-js write, and against hand-made headers.
 */
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_IMAGE_PIXELS, ImageError, checkImageSize, decodeImage, encodePng, readImageHeader } from '../../src/image/index.ts';

const rgb = (w: number, h: number) => ({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(7) });

/** A PNG signature and IHDR declaring w x h, and nothing else: what a bomb's first 33 bytes are. */
function pngHead(w: number, h: number): Uint8Array {
  const b = Buffer.alloc(33);
  Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(w, 16);
  b.writeUInt32BE(h, 20);
  b[24] = 8;
  b[25] = 2;
  return b;
}

function jpegHead(w: number, h: number, marker = 0xc0): Uint8Array {
  return Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, marker, 0, 11, 8, h >> 8, h & 255, w >> 8, w & 255, 1, 1, 0x11, 0]);
}

describe('readImageHeader', () => {
  it('reads the size of real PNG and JPEG files', () => {
    expect(readImageHeader(encodePng(rgb(37, 21)))).toEqual({ format: 'png', width: 37, height: 21 });
    const j = jpeg.encode({ width: 40, height: 24, data: Buffer.alloc(40 * 24 * 4, 200) }, 80).data;
    expect(readImageHeader(j)).toEqual({ format: 'jpeg', width: 40, height: 24 });
  });

  it('reads progressive (SOF2) and other frame types, skipping DHT and fill bytes', () => {
    expect(readImageHeader(jpegHead(300, 200, 0xc2))).toEqual({ format: 'jpeg', width: 300, height: 200 });
    const withDht = Uint8Array.from([0xff, 0xd8, 0xff, 0xc4, 0, 3, 0, 0xff, 0xff, 0xc1, 0, 11, 8, 0, 9, 0, 10, 1, 1, 0x11, 0]);
    expect(readImageHeader(withDht)).toEqual({ format: 'jpeg', width: 10, height: 9 });
  });

  it('refuses what is not a PNG or JPEG header with an ImageError', () => {
    for (const [bytes, code] of [
      [new TextEncoder().encode('hello world'), 'UNSUPPORTED_IMAGE'],
      [pngHead(10, 10).subarray(0, 20), 'BAD_PNG'],
      [pngHead(0, 10), 'BAD_PNG'],
      [Uint8Array.from([0xff, 0xd8, 0xff, 0xda, 0, 2]), 'BAD_JPEG'],
      [jpegHead(0, 10), 'BAD_JPEG'],
      [Uint8Array.from([0xff, 0xd8, 0xff]), 'BAD_JPEG'],
    ] as const) {
      const e = (() => {
        try {
          readImageHeader(bytes);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(ImageError);
      expect((e as ImageError).code).toBe(code);
    }
  });
});

describe('the pixel limit', () => {
  it('refuses a 10000x10000 PNG and an 8000x8000 JPEG from 33 and 21 bytes: the header alone decides', () => {
    expect(() => checkImageSize(pngHead(10_000, 10_000), 16_777_216)).toThrow(/declares 10000x10000 pixels \(100\.0 MP\), more than the limit/);
    expect(() => checkImageSize(jpegHead(8000, 8000), 16_777_216)).toThrow(/declares 8000x8000 pixels/);
    // decodeImage checks first: a file that is only a header fails as too large, not as a broken file
    expect(() => decodeImage(pngHead(10_000, 10_000))).toThrow(expect.objectContaining({ code: 'IMAGE_TOO_LARGE' }));
    expect(() => decodeImage(pngHead(100, 100))).toThrow(expect.objectContaining({ code: 'BAD_PNG' }));
  });

  it("defaults to Pillow's MAX_IMAGE_PIXELS and accepts what fits", () => {
    expect(DEFAULT_MAX_IMAGE_PIXELS).toBe(89_478_485);
    expect(checkImageSize(pngHead(9000, 9000))).toMatchObject({ width: 9000 });
    expect(() => checkImageSize(pngHead(9500, 9500))).toThrow(/IMAGE|limit/);
    expect(decodeImage(encodePng(rgb(5, 3)), 'x', { maxPixels: 15 }).data.length).toBe(45);
    expect(() => decodeImage(encodePng(rgb(5, 3)), 'x', { maxPixels: 14 })).toThrow(/x declares 5x3 pixels/);
  });
});
