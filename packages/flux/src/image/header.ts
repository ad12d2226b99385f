/**
 * An image's format and declared size from its header alone (microseconds, no decode), so that a small file that
 * declares a huge image (a "decompression bomb": 109 bytes of PNG declaring 10000x10000) is refused before any
 * pixel memory is allocated. PNG: the IHDR chunk; JPEG: the first start-of-frame marker.
 */
import { isPng } from './png.ts';
import { ImageError } from './types.ts';

export interface ImageHeader {
  format: 'png' | 'jpeg';
  width: number;
  height: number;
}

/**
 * Pillow's `Image.MAX_IMAGE_PIXELS` (about 0.25 GB of 24-bit pixels): the library refuses to decode anything
 * larger. The server's own limit (`--max-image-pixels`) is lower.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 89_478_485;

export const isJpeg = (b: Uint8Array): boolean => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/** Format, width and height from the header; throws ImageError when the bytes are not a PNG or JPEG header. */
export function readImageHeader(bytes: Uint8Array, name = 'image'): ImageHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isPng(bytes)) {
    // signature (8), IHDR length (4) = 13, "IHDR" (4), width (4), height (4)
    if (bytes.length < 24 || view.getUint32(8) !== 13 || String.fromCharCode(...bytes.subarray(12, 16)) !== 'IHDR') {
      throw new ImageError('BAD_PNG', `${name}: the PNG has no valid IHDR header`);
    }
    const width = view.getUint32(16);
    const height = view.getUint32(20);
    if (width === 0 || height === 0) throw new ImageError('BAD_PNG', `${name}: the PNG declares an empty image (${width}x${height})`);
    return { format: 'png', width, height };
  }
  if (isJpeg(bytes)) {
    let i = 2;
    while (i + 4 <= bytes.length) {
      if (bytes[i] !== 0xff) throw new ImageError('BAD_JPEG', `${name}: the JPEG's markers are corrupt (no frame header found)`);
      const marker = bytes[i + 1]!;
      if (marker === 0xff) {
        i += 1; // fill byte
        continue;
      }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        i += 2; // markers without a length
        continue;
      }
      if (marker === 0xd9 || marker === 0xda) break; // end of image, or scan data before any frame header
      const length = view.getUint16(i + 2);
      if (length < 2) break;
      // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): length (2), precision (1), height (2), width (2)
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (i + 9 > bytes.length) break;
        const height = view.getUint16(i + 5);
        const width = view.getUint16(i + 7);
        if (width === 0 || height === 0) throw new ImageError('BAD_JPEG', `${name}: the JPEG declares an empty or unsized image (${width}x${height})`);
        return { format: 'jpeg', width, height };
      }
      i += 2 + length;
    }
    throw new ImageError('BAD_JPEG', `${name}: the JPEG has no frame header (SOF) before its data`);
  }
  throw new ImageError('UNSUPPORTED_IMAGE', `${name} is neither a PNG nor a JPEG file; convert it to PNG`);
}

/** The header, checked against a pixel limit: throws ImageError ('IMAGE_TOO_LARGE') beyond it. */
export function checkImageSize(bytes: Uint8Array, maxPixels = DEFAULT_MAX_IMAGE_PIXELS, name = 'image'): ImageHeader {
  const h = readImageHeader(bytes, name);
  if (h.width * h.height > maxPixels) {
    throw new ImageError(
      'IMAGE_TOO_LARGE',
      `${name} declares ${h.width}x${h.height} pixels (${(h.width * h.height / 1e6).toFixed(1)} MP), more than the limit of ${maxPixels} pixels (${(maxPixels / 1e6).toFixed(1)} MP); resize it first`,
    );
  }
  return h;
}
