/** Option records a user writes by hand: a misspelt key is an error, never silently ignored. */
import { FluxError } from '@flux-ts/core';

/** Throws `code` naming every key of `given` that is not in `known` (and the known ones). */
export function checkKnownKeys(given: object | undefined, known: readonly string[], what: string, code = 'UNKNOWN_OPTION'): void {
  if (given === undefined || given === null) return;
  const unknown = Object.keys(given).filter((k) => !known.includes(k) && (given as Record<string, unknown>)[k] !== undefined);
  if (unknown.length === 0) return;
  const hint = unknown.map((k) => {
    const near = known.find((n) => closeTo(k, n));
    return near ? `${k} (did you mean ${near}?)` : k;
  });
  throw new FluxError(code, `unknown ${what} option${unknown.length > 1 ? 's' : ''}: ${hint.join(', ')}; known: ${known.join(', ')}`);
}

/** Same letters give or take one edit, or one contains the other (case-insensitive). */
function closeTo(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  if (x.includes(y) || y.includes(x)) return true;
  if (Math.abs(x.length - y.length) > 2) return false;
  const d: number[][] = Array.from({ length: x.length + 1 }, (_, i) => [i, ...Array<number>(y.length).fill(0)]);
  for (let j = 1; j <= y.length; j++) d[0]![j] = j;
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[x.length]![y.length]! <= 2;
}
