/**
 * PNG encode / decode (pngjs, pure JS) with text chunks: `tEXt` for Latin-1 text, `iTXt` (UTF-8, uncompressed)
 * otherwise, as PIL's PngInfo writes them, so that A1111-style `parameters` and a JSON chunk travel with the image.
 */
import { inflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { ImageError, type RgbImage } from './types.ts';

const SIGNATURE = Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const isLatin1 = (s: string) => /^[\u0000-\u00ff]*$/.test(s);

/** A `tEXt` chunk when key and text are Latin-1 without NUL, else an uncompressed UTF-8 `iTXt` chunk. */
function textChunk(key: string, text: string): Buffer {
  if (!/^[\u0020-\u007e\u00a1-\u00ff]{1,79}$/.test(key)) {
    throw new ImageError('PNG_TEXT_KEY', `PNG text key ${JSON.stringify(key)} must be 1 to 79 printable Latin-1 characters`);
  }
  if (isLatin1(text) && !text.includes('\u0000')) {
    return chunk('tEXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  }
  // keyword \0 compression-flag(0) method(0) language-tag \0 translated-keyword \0 text
  return chunk('iTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** RGB bytes (row-major, 3 per pixel) -> PNG file bytes, with optional text chunks placed after IHDR. */
export function encodePng(image: RgbImage, text: Record<string, string> = {}): Buffer {
  const { width, height, data } = image;
  if (data.length !== width * height * 3) {
    throw new ImageError('IMAGE_SIZE', `RGB data has ${data.length} bytes; ${width}x${height} needs ${width * height * 3}`);
  }
  const png = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 8 });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.length);
  const raw = PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
  if (Object.keys(text).length === 0) return raw;
  const ihdrEnd = 8 + 12 + raw.readUInt32BE(8); // signature + IHDR chunk
  return Buffer.concat([raw.subarray(0, ihdrEnd), ...Object.entries(text).map(([k, v]) => textChunk(k, v)), raw.subarray(ihdrEnd)]);
}

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

/** Largest decompressed text chunk read (a zlib bomb in a zTXt/iTXt chunk is skipped, not inflated). */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;

/** The text chunks (tEXt, zTXt, iTXt) of a PNG file, key -> text (the last one wins on a repeated key). */
export function readPngText(bytes: Uint8Array): Record<string, string> {
  if (!isPng(bytes)) throw new ImageError('NOT_PNG', 'not a PNG file (bad signature)');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: Record<string, string> = {};
  let p = 8;
  while (p + 12 <= buf.length) {
    const len = buf.readUInt32BE(p);
    const type = buf.toString('latin1', p + 4, p + 8);
    const end = p + 8 + len;
    if (end + 4 > buf.length) throw new ImageError('BAD_PNG', `PNG chunk ${type} at byte ${p} runs past the end of the file`);
    const d = buf.subarray(p + 8, end);
    const nul = d.indexOf(0);
    if (nul > 0 && (type === 'tEXt' || type === 'zTXt' || type === 'iTXt')) {
      const key = d.toString('latin1', 0, nul);
      try {
        if (type === 'tEXt') out[key] = d.toString('latin1', nul + 1);
        else if (type === 'zTXt') out[key] = inflateSync(d.subarray(nul + 2), { maxOutputLength: MAX_TEXT_BYTES }).toString('latin1');
        else {
          const compressed = d[nul + 1] === 1;
          const lang = d.indexOf(0, nul + 3);
          const trans = d.indexOf(0, lang + 1);
          const body = d.subarray(trans + 1);
          out[key] = (compressed ? inflateSync(body, { maxOutputLength: MAX_TEXT_BYTES }) : body).toString('utf8');
        }
      } catch {
        // an unreadable text chunk is skipped, as PIL does
      }
    }
    if (type === 'IEND') break;
    p = end + 4;
  }
  return out;
}

/** PNG bytes -> RGB (alpha dropped, as PIL's convert("RGB"); 16-bit scaled to 8-bit; palette / gray expanded). */
export function decodePng(bytes: Uint8Array): RgbImage {
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (e) {
    throw new ImageError('BAD_PNG', `cannot decode PNG: ${(e as Error).message}`);
  }
  const { width, height } = png;
  const rgba = png.data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    data[i * 3] = rgba[j]!;
    data[i * 3 + 1] = rgba[j + 1]!;
    data[i * 3 + 2] = rgba[j + 2]!;
  }
  return { width, height, data };
}
