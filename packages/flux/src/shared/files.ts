/** File helpers every loader uses: kinds of paths, and JSON config files read with one error format. */
import { readFileSync, statSync } from 'node:fs';
import { FluxError } from '@flux-ts/core';

function stat(path: string) {
  try {
    return statSync(path);
  } catch {
    return undefined; // missing, or a path through a file (ENOTDIR)
  }
}

export function isDir(path: string): boolean {
  return stat(path)?.isDirectory() ?? false;
}

export function isFile(path: string): boolean {
  return stat(path)?.isFile() ?? false;
}

/** Makes the error of `readJson` (a subclass with its own code, e.g. ModelNotFoundError). */
export type JsonErrorFactory = (code: 'FILE_NOT_FOUND' | 'INVALID_JSON', message: string, cause?: unknown) => Error;

const fluxError: JsonErrorFactory = (code, message, cause) => new FluxError(code, message, cause === undefined ? undefined : { cause });

/**
 * The JSON object in `path`. A file that cannot be read (`<path>: cannot read (ENOENT); <hint>`), that is not
 * JSON (`<path>: not valid JSON (...); <hint>`) or not an object is an error naming the file and what to do.
 */
export function readJson(path: string, hint: string, error: JsonErrorFactory = fluxError): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw error('FILE_NOT_FOUND', `${path}: cannot read (${(cause as NodeJS.ErrnoException).code ?? String(cause)}); ${hint}`, cause);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw error('INVALID_JSON', `${path}: not valid JSON (${cause instanceof Error ? cause.message : String(cause)}); ${hint}`, cause);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw error('INVALID_JSON', `${path}: must hold a JSON object; ${hint}`);
  return json as Record<string, unknown>;
}
