/** Request bodies: multipart parts to plain fields, and the image-to-image input decoded (or a 422). */
import { FluxError, RequestValidationError } from '@flux-ts/core';
import { decodeImage, type RgbImage } from '@flux-ts/flux';
import type { FastifyRequest } from 'fastify';

export function decodeInputImage(image: string | Uint8Array): RgbImage {
  let bytes: Uint8Array;
  if (typeof image === 'string') {
    const body = image.startsWith('data:') ? image.slice(image.indexOf(',') + 1) : image;
    bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  } else {
    bytes = image;
  }
  try {
    return decodeImage(bytes, 'image');
  } catch (e) {
    const why = e instanceof FluxError ? e.message : 'it could not be decoded';
    throw new RequestValidationError([
      { field: 'image', given: `${bytes.length} bytes`, allowed: 'a PNG or JPEG image', message: `is not a readable PNG or JPEG image (${why})` },
    ]);
  }
}

/** Multipart body -> plain fields (files as bytes); a truncated field is a 413. */
export async function readMultipart(request: FastifyRequest): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      out[part.fieldname] = new Uint8Array(await part.toBuffer());
    } else {
      if (part.valueTruncated || part.fieldnameTruncated) {
        throw Object.assign(new FluxError('payload_too_large', `form field ${part.fieldname} is larger than the server's limit`), { statusCode: 413 });
      }
      out[part.fieldname] = part.value;
    }
  }
  return out;
}
