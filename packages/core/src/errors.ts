/**
 * Errors a user can cause (bad file, bad parameter, missing weights, bad request).
 * Every one carries a stable `code` and a message that says what is wrong and what to do.
 * The CLI prints `error: <message>` for these and exits 1; anything else is a bug.
 */
export class FluxError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FluxError';
    this.code = code;
  }
}

export function isFluxError(e: unknown): e is FluxError {
  return e instanceof FluxError;
}
