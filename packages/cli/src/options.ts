/** Option parsing shared by the long-running commands (`serve`, `worker`): same rules, same messages. */
import { FluxError } from '@flux-ts/core';

/** How the user runs this command: `pnpm flux` in a clone of the repository (its script), else `flux-ts`. */
export const PROGRAM = process.env.npm_lifecycle_event === 'flux' ? 'pnpm flux' : 'flux-ts';

export type CliResidency = 'auto' | 'streamed' | 'resident';

/** A numeric option: `def` when absent, else a finite number >= `min`. */
export function numberOption(name: string, v: string | undefined, def: number, min = 0): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new FluxError('INVALID_ARGUMENT', `--${name} must be a number >= ${min}, got ${v}`);
  return n;
}

/** `--model` (repeatable), else $FLUX_MODEL; at least one is required. */
export function modelsOption(values: Record<string, unknown>, command: string, what = 'the model'): string[] {
  const models = (values.model as string[] | undefined) ?? (process.env.FLUX_MODEL ? [process.env.FLUX_MODEL] : []);
  if (models.length === 0) throw new FluxError('INVALID_ARGUMENT', `give ${what}: --model PATH (or set FLUX_MODEL); see pnpm flux ${command} --help`);
  return models;
}

/** `--residency auto|streamed|resident` (transformer weights), default auto. */
export function residencyOption(v: string | undefined): CliResidency {
  const residency = v ?? 'auto';
  if (!['auto', 'streamed', 'resident'].includes(residency)) throw new FluxError('INVALID_ARGUMENT', `--residency must be auto, streamed or resident, got ${residency}`);
  return residency as CliResidency;
}
