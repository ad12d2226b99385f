/**
 * Every error code the API answers with, in one casing (lower snake_case), with its HTTP status beside it: the one
 * table the routes, the job results, the OpenAPI document and the README use. A model error raised by the library
 * in its own casing (`BAD_PNG`) is lower-cased at the boundary (`apiCode`), so clients see one spelling.
 */
import { FluxError } from '@flux-ts/core';

export interface ErrorCodeDoc {
  status: number;
  description: string;
}

export const ERROR_CODES = Object.freeze({
  bad_request: { status: 400, description: 'The request is not valid HTTP, its path is malformed, or its body cannot be parsed.' },
  invalid_request_id: { status: 400, description: 'The X-Request-Id header is not 1 to 64 letters, digits, "_" or "-".' },
  unauthorized: { status: 401, description: 'Missing or wrong `Authorization: bearer <token>`.' },
  not_found: { status: 404, description: 'No such route.' },
  model_not_found: { status: 404, description: 'The model in the path is not served here.' },
  request_not_found: { status: 404, description: 'No request with this id (unknown, or finished longer ago than --result-ttl).' },
  request_timeout: { status: 408, description: 'The request (headers and body) did not arrive within --request-timeout.' },
  cancelled: { status: 409, description: 'The job was cancelled (DELETE, a disconnected synchronous client, or a shutdown).' },
  not_cancellable: { status: 409, description: 'The job already finished.' },
  duplicate_request_id: { status: 409, description: 'A job with this X-Request-Id already exists.' },
  result_expired: { status: 410, description: 'The job succeeded but its result is no longer kept (older than --result-ttl).' },
  payload_too_large: { status: 413, description: 'The body, a form field or the uploaded image is larger than the server accepts.' },
  uri_too_long: { status: 414, description: 'A path segment is longer than the server accepts.' },
  unsupported_media_type: { status: 415, description: 'The Content-Type is not JSON, multipart/form-data or application/x-www-form-urlencoded.' },
  invalid_request: { status: 422, description: 'One or more fields are invalid; `error.fields` lists each with what is allowed.' },
  webhook_refused: { status: 422, description: 'The webhook URL is not a public http(s) address.' },
  invalid_generate_options: { status: 422, description: 'The model refused the options (a job error).' },
  bad_png: { status: 422, description: 'The input image is not a readable PNG (a job error).' },
  bad_jpeg: { status: 422, description: 'The input image is not a readable JPEG (a job error).' },
  unsupported_image: { status: 422, description: 'The input image is neither PNG nor JPEG (a job error).' },
  image_too_large: { status: 422, description: 'The input image declares more pixels than --max-image-pixels.' },
  queue_full: { status: 429, description: 'The queue is full; retry after `Retry-After` seconds.' },
  headers_too_large: { status: 431, description: 'The request headers are larger than 16 KiB.' },
  internal_error: { status: 500, description: 'An unexpected failure; details are in the server log, never in the answer.' },
  generator_crashed: { status: 500, description: 'The generation thread died (out of memory, native crash); the next job starts a fresh one.' },
  worker_lost: { status: 500, description: 'The job lost its worker more often than --max-stalled allows (Redis mode).' },
  interrupted: { status: 500, description: 'The server stopped (crash, kill) while the job ran, more often than it is retried.' },
  shutting_down: { status: 503, description: 'The server is shutting down and accepts no new jobs.' },
} satisfies Record<string, ErrorCodeDoc>);

export type ErrorCode = keyof typeof ERROR_CODES;

/** The HTTP status of an error code (500 for a code not in the table). */
export function errorStatus(code: string | undefined): number {
  return code !== undefined && Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as ErrorCode].status : 500;
}

/** A library error code in the API's casing: `BAD_PNG` -> `bad_png`; `aborted` -> `cancelled`. */
export function apiCode(code: string): string {
  const c = code.toLowerCase();
  return c === 'aborted' ? 'cancelled' : c;
}

/** The error table as markdown (README "Errors"): code, HTTP status, meaning. */
export function errorCodesMarkdown(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, d]) => `| \`${code}\` | ${d.status} | ${d.description} |`);
  return ['| code | HTTP | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** An error a route raises with its code; the status comes from the table. */
export class ApiError extends FluxError {
  readonly statusCode: number;
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'ApiError';
    this.statusCode = ERROR_CODES[code].status;
  }
}
