/**
 * Reading a model's config.json (diffusers / transformers) into a typed, frozen config: absent fields take the
 * defaults of the Python class that reads that file (as `from_pretrained` does), types and invariants are checked,
 * and a ConfigError names the file and the field.
 */
import { FluxError } from '@flux-ts/core';

export function freeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(o);
}

export class ConfigError extends FluxError {
  constructor(source: string, message: string) {
    super('INVALID_CONFIG', `${source}: ${message}`);
    this.name = 'ConfigError';
  }
}

export function configError(source: string, message: string): ConfigError {
  return new ConfigError(source, message);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function configObject(json: unknown, source: string): Record<string, unknown> {
  if (!isObject(json)) throw configError(source, 'must be a JSON object');
  return json;
}

export function positiveInt(v: number, name: string, source: string, allowZero = false): void {
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) {
    throw configError(source, `${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
}

/** Typed access to config fields, falling back to the Python class defaults for absent (or null) fields. */
export function reader(c: Record<string, unknown>, defaults: Record<string, unknown>, source: string) {
  const value = (k: string): unknown => (c[k] ?? defaults[k]);
  const fail = (k: string, want: string): never => {
    throw configError(source, `"${k}" must be ${want}, got ${JSON.stringify(value(k))}`);
  };
  return {
    int(k: string, allowZero = false): number {
      const v = value(k);
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) fail(k, allowZero ? 'a non-negative integer' : 'a positive integer');
      return v as number;
    },
    number(k: string): number {
      const v = value(k);
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(k, 'a number');
      return v as number;
    },
    bool(k: string): boolean {
      const v = value(k);
      if (typeof v !== 'boolean') fail(k, 'true or false');
      return v as boolean;
    },
    string(k: string): string {
      const v = value(k);
      if (typeof v !== 'string') fail(k, 'a string');
      return v as string;
    },
    intArray(k: string): number[] {
      const v = value(k);
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x > 0)) fail(k, 'an array of positive integers');
      return [...(v as number[])];
    },
    stringArray(k: string): string[] {
      const v = value(k);
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail(k, 'an array of strings');
      return [...(v as string[])];
    },
  };
}
