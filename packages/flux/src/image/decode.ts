/**
 * Input images for image-to-image: PNG (pngjs) or JPEG (jpeg-js, baseline and progressive), both pure JS.
 * NOTE: jpeg-js's IDCT and chroma upsampling are not libjpeg-turbo's (what PIL uses), so a JPEG can decode a
 * level or two differently from diffusers' PIL path; PNG input decodes identically.
 */
import jpeg from 'jpeg-js';
import { DEFAULT_MAX_IMAGE_PIXELS, checkImageSize } from './header.ts';
import { decodePng } from './png.ts';
import { ImageError, type RgbImage } from './types.ts';

/**
 * PNG or JPEG bytes -> RGB. The declared size is read from the header first: an image of more than `maxPixels`
 * pixels (default Pillow's MAX_IMAGE_PIXELS) is refused with ImageError 'IMAGE_TOO_LARGE' before decoding.
 */
export function decodeImage(bytes: Uint8Array, name = 'image', opts: { maxPixels?: number } = {}): RgbImage {
  const { format } = checkImageSize(bytes, opts.maxPixels ?? DEFAULT_MAX_IMAGE_PIXELS, name);
  if (format === 'png') return decodePng(bytes);
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
  } catch (e) {
    throw new ImageError('BAD_JPEG', `${name}: cannot decode JPEG: ${(e as Error).message}`);
  }
  const n = img.width * img.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    data[i * 3] = img.data[i * 4]!;
    data[i * 3 + 1] = img.data[i * 4 + 1]!;
    data[i * 3 + 2] = img.data[i * 4 + 2]!;
  }
  return { width: img.width, height: img.height, data };
}
