/** Response bodies: DeepInfra-style errors, validation errors, OpenAI-style errors, PNG data URIs. */
import type { RequestValidationError } from '@flux-ts/core';

/** DeepInfra-style error body: `detail` (FastAPI's field) plus a typed `error`. */
export function apiError(type: string, message: string, extra: Record<string, unknown> = {}) {
  return { detail: message, error: { type, message, ...extra } };
}

/** A 422 body (FastAPI's `detail` list plus a typed `error`): at most 20 problems, the rest counted in `omitted`. */
export function validationBody(e: RequestValidationError) {
  return {
    detail: e.fields.map((f) => ({ loc: ['body', f.field], msg: f.message, type: 'value_error', input: f.given, allowed: f.allowed })),
    error: { type: 'invalid_request', message: e.message, fields: e.fields, omitted: e.omitted, ...(e.knownFields ? { known_fields: e.knownFields } : {}) },
  };
}

export function openaiError(type: string, message: string, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}

export const dataUri = (png: Uint8Array) => `data:image/png;base64,${Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64')}`;
