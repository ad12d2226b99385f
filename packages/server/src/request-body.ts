/**
 * Request bodies: multipart parts to plain fields, every byte counted against the body limit while it streams, and
 * the image-to-image input admitted by its header alone (format and declared size), never decoded here.
 */
import { FluxError, PROMPT_MAX_CHARS, RequestValidationError } from '@flux-ts/core';
import { ImageError, checkImageSize } from '@flux-ts/flux';
import type { FastifyRequest } from 'fastify';

export interface BodyLimits {
  /** Largest request body in bytes (JSON, urlencoded, or the whole multipart form). */
  bodyBytes: number;
  /** Largest input image file in bytes. */
  uploadBytes: number;
  /** Largest input image in pixels (width x height as its header declares them). */
  maxImagePixels: number;
  /** Image sizes accepted: the seed API's list ('api', default) or any multiple of 16 from 128 to 2048 ('any'). */
  sizes?: 'api' | 'any';
}

/** A 413: the body, a field or an upload is larger than the server accepts. */
export class PayloadTooLargeError extends FluxError {
  readonly statusCode = 413;
  constructor(message: string) {
    super('payload_too_large', message);
    this.name = 'PayloadTooLargeError';
  }
}

/** A 400: the body cannot be parsed at all (for example a multipart body without its boundary). */
export class BadRequestError extends FluxError {
  readonly statusCode = 400;
  constructor(message: string) {
    super('bad_request', message);
    this.name = 'BadRequestError';
  }
}

/** The base64 text of a file of `bytes` bytes as a data URI, with room for line breaks: the `image` field's cap. */
export const base64Cap = (bytes: number) => Math.ceil((Math.ceil(bytes / 3) * 4 * 78) / 76) + 256;

/** The largest value a form field can have and still be valid, in bytes (UTF-8 needs at most 3 per UTF-16 unit). */
function fieldCap(name: string, limits: BodyLimits): number {
  switch (name) {
    case 'prompt':
    case 'negative_prompt':
      return PROMPT_MAX_CHARS * 3;
    case 'image':
      return base64Cap(limits.uploadBytes);
    case 'webhook':
      return 8192;
    default:
      return 256; // numbers, booleans, and names that validation refuses as unknown
  }
}

/**
 * The image-to-image input as file bytes, admitted by its header: a PNG or JPEG of at most `maxImagePixels`
 * declared pixels and `uploadBytes` bytes. Decoding happens later, when the job runs. Throws a 422
 * (RequestValidationError on `image`) or a 413.
 */
export function admitInputImage(image: string | Uint8Array, limits: BodyLimits): Uint8Array {
  let bytes: Uint8Array;
  if (typeof image === 'string') {
    const body = image.startsWith('data:') ? image.slice(image.indexOf(',') + 1) : image;
    bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  } else {
    bytes = image;
  }
  if (bytes.length > limits.uploadBytes) {
    throw new PayloadTooLargeError(`the image is ${bytes.length} bytes, more than the server's limit of ${limits.uploadBytes} bytes (--max-upload-mb)`);
  }
  try {
    checkImageSize(bytes, limits.maxImagePixels, 'image');
  } catch (e) {
    if (!(e instanceof ImageError)) throw e;
    const tooLarge = e.code === 'IMAGE_TOO_LARGE';
    throw new RequestValidationError([
      {
        field: 'image',
        given: `${bytes.length} bytes`,
        allowed: `a PNG or JPEG image of at most ${limits.maxImagePixels} pixels (--max-image-pixels)`,
        message: tooLarge ? e.message.replace(/^image /, '') : `is not a readable PNG or JPEG image (${e.message})`,
      },
    ]);
  }
  return bytes;
}

/**
 * Multipart body -> plain fields (files as bytes). Every part's bytes count against `bodyBytes` as they arrive, a
 * field longer than its largest valid value is refused at once, and a file beyond `uploadBytes` too (413); a body
 * that is not well-formed multipart (no boundary, cut short) is a 400.
 */
export async function readMultipart(request: FastifyRequest, limits: BodyLimits): Promise<Record<string, unknown>> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.bodyBytes) {
    throw new PayloadTooLargeError(`the body is ${declared} bytes, more than the server's limit of ${limits.bodyBytes} bytes (--max-body-mb)`);
  }
  const out: Record<string, unknown> = {};
  let total = 0;
  const count = (n: number) => {
    total += n;
    if (total > limits.bodyBytes) throw new PayloadTooLargeError(`the form is larger than the server's limit of ${limits.bodyBytes} bytes (--max-body-mb)`);
  };
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const chunks: Buffer[] = [];
        for await (const c of part.file as AsyncIterable<Buffer>) {
          count(c.length);
          chunks.push(c);
        }
        if (part.file.truncated) throw new PayloadTooLargeError(`the uploaded file is larger than the server's limit of ${limits.uploadBytes} bytes (--max-upload-mb)`);
        out[part.fieldname] = new Uint8Array(Buffer.concat(chunks));
      } else {
        const value = String(part.value ?? '');
        const bytes = Buffer.byteLength(value);
        count(bytes);
        const cap = fieldCap(part.fieldname, limits);
        if (part.valueTruncated || part.fieldnameTruncated || bytes > cap) {
          throw new PayloadTooLargeError(`form field ${part.fieldname} is larger than its largest valid value (${cap} bytes)`);
        }
        out[part.fieldname] = value;
      }
    }
  } catch (e) {
    if (e instanceof FluxError) throw e;
    const err = e as Error & { statusCode?: number };
    if (err.statusCode === 413) throw new PayloadTooLargeError(`${err.message} (limits: body ${limits.bodyBytes} bytes, upload ${limits.uploadBytes} bytes)`);
    throw new BadRequestError(`the multipart/form-data body is malformed: ${err.message}`);
  }
  return out;
}
