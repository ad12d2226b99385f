/**
 * Progress of a generation, from inside every stage: one event type for the pipeline's `onProgress`. Counts are
 * per stage run and monotone: `done` goes 1, 2, ... `total` within one run of a stage (a stage may run more than
 * once, e.g. `load` for the transformer and then for the VAE; each run restarts at 1 and names its `part`).
 */

/** The stages of a generation, in the order they run. */
export type Stage = 'download' | 'load' | 'text' | 'image-encode' | 'denoise' | 'preview' | 'decode';

/** What one unit of `done` is. */
export type ProgressUnit = 'byte' | 'tensor' | 'block' | 'level' | 'tile' | 'image';

export interface ProgressEvent {
  stage: Stage;
  /**
   * What is being worked on: `clip` / `t5` (text), `transformer`, `vae`, `latent-rgb` (fitting the proj preview
   * map), or the file being fetched (download).
   */
  part: string;
  /** Units done in this run of the stage, 1..total. */
  done: number;
  total: number;
  unit: ProgressUnit;
  /** denoise (and the previews made during it): the step the block belongs to (1-based) and the step count. */
  step?: number;
  steps?: number;
  /** Milliseconds since this run of the stage started (its first event counts from the stage's start). */
  elapsedMs: number;
}

export type ProgressCallback = (event: ProgressEvent) => void;

/** Emits one stage run's events with `elapsedMs` measured from `start()`; a no-op without a callback. */
export function stageReporter(
  cb: ProgressCallback | undefined,
  stage: Stage,
  part: string,
  unit: ProgressUnit,
  now: () => number = () => performance.now(),
): (done: number, total: number, extra?: { step?: number; steps?: number; part?: string }) => void {
  const t0 = now();
  if (!cb) return () => {};
  return (done, total, extra) => cb({ stage, part: extra?.part ?? part, done, total, unit, ...(extra?.step !== undefined ? { step: extra.step, steps: extra.steps } : {}), elapsedMs: now() - t0 });
}
