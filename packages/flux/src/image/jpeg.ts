/**
 * JPEG output (jpeg-js's baseline encoder, pure JS, deterministic) with text in COM segments, and reading those
 * segments back: how a JPEG made by `flux-ts generate --out x.jpg` carries its generation parameters.
 */
import jpeg from 'jpeg-js';
import { isJpeg } from './header.ts';
import { ImageError, type RgbImage } from './types.ts';

/** The longest text one COM segment holds (its 16-bit length counts itself). */
const COM_MAX_BYTES = 65533;

/** RGB -> JPEG bytes at `quality` (1-100), each comment (UTF-8) in a COM segment. */
export function encodeJpeg(image: RgbImage, quality = 90, comments: readonly string[] = []): Buffer {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) throw new ImageError('INVALID_ARGUMENT', `JPEG quality must be an integer from 1 to 100, got ${quality}`);
  const { width, height, data } = image;
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += 3) {
    rgba[i * 4] = data[j]!;
    rgba[i * 4 + 1] = data[j + 1]!;
    rgba[i * 4 + 2] = data[j + 2]!;
    rgba[i * 4 + 3] = 255;
  }
  const binary = comments.map((c) => {
    const bytes = Buffer.from(c, 'utf8');
    if (bytes.length > COM_MAX_BYTES) throw new ImageError('INVALID_ARGUMENT', `a JPEG comment holds at most ${COM_MAX_BYTES} bytes, got ${bytes.length}`);
    return bytes.toString('latin1'); // jpeg-js writes each char code as one byte
  });
  return Buffer.from(jpeg.encode({ width, height, data: rgba, comments: binary } as jpeg.RawImageData<Uint8Array> & { comments: string[] }, quality).data);
}

/** The COM segments of a JPEG, as UTF-8 text, in file order (up to the image data). */
export function readJpegComments(bytes: Uint8Array): string[] {
  if (!isJpeg(bytes)) throw new ImageError('IMAGE_UNREADABLE', 'not a JPEG file (no FF D8 FF signature)');
  const out: string[] = [];
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) break;
    const marker = bytes[p + 1]!;
    if (marker === 0xd9 || marker === 0xda) break; // end of image, start of scan
    const len = (bytes[p + 2]! << 8) | bytes[p + 3]!;
    if (len < 2 || p + 2 + len > bytes.length) break;
    if (marker === 0xfe) out.push(Buffer.from(bytes.subarray(p + 4, p + 2 + len)).toString('utf8'));
    p += 2 + len;
  }
  return out;
}
