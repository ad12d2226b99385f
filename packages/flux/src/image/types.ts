import { FluxError } from '@flux-ts/core';

/** An 8-bit RGB image: `data` holds height * width * 3 bytes, row-major, R G B per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** An image file that cannot be read or written (bad format, wrong size). */
export class ImageError extends FluxError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'ImageError';
  }
}
