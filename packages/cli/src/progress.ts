/**
 * What the user sees while `generate` runs, on stderr: on a terminal one redrawn line per stage run with a bar, the
 * measured rate and an ETA from it (a denoising step's from its blocks), finished as `stage: time`; elsewhere (a
 * pipe, a log file, `--json`) plain lines: one when a stage run ends, one per step, and one at most every
 * `intervalMs` inside a long stage.
 */
import type { ProgressEvent, Stage } from '@flux-ts/flux';
import { formatDuration } from '@flux-ts/flux';

export interface DisplayOptions {
  stream: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  /** Redrawn line (terminal) or plain lines. Default: stream.isTTY. */
  tty?: boolean;
  /** Plain mode: at most one progress line this often inside a stage (default 10 s). */
  intervalMs?: number;
  now?: () => number;
}

const UNITS: Record<ProgressEvent['unit'], [string, string]> = {
  byte: ['byte', 'bytes'],
  tensor: ['tensor', 'tensors'],
  block: ['block', 'blocks'],
  level: ['level', 'levels'],
  tile: ['tile', 'tiles'],
  image: ['image', 'images'],
};

function seconds(ms: number): string {
  if (!Number.isFinite(ms)) return '--';
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : formatDuration(ms / 1000);
}

export function fmtMs(ms: number): string {
  return seconds(ms);
}

/** The label of a stage run: `text`, `load vae`, `preview map`, ... */
function label(e: ProgressEvent): string {
  if (e.stage === 'load') return `load ${e.part}`;
  if (e.stage === 'preview') return e.part === 'latent-rgb' ? 'fit preview map' : 'preview';
  return e.stage;
}

export class ProgressDisplay {
  private readonly stream: DisplayOptions['stream'];
  private readonly tty: boolean;
  private readonly interval: number;
  private readonly now: () => number;
  /** The run being drawn: its label and last event. */
  private current: { label: string; last: ProgressEvent; part: string; partDone: number; partMs: number } | null = null;
  private drawn = false;
  private lastPlain = 0;
  private lastDraw = 0;
  private note = '';

  constructor(opts: DisplayOptions) {
    this.stream = opts.stream;
    this.tty = opts.tty ?? opts.stream.isTTY === true;
    this.interval = opts.intervalMs ?? 10_000;
    this.now = opts.now ?? (() => performance.now());
  }

  private clear(): void {
    if (this.tty && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  /** A line of its own (finished stages, notes), keeping the bar below it. */
  line(text: string): void {
    this.clear();
    this.stream.write(`${text}\n`);
    if (this.current && this.tty) this.draw(true);
  }

  /** A short note shown at the end of the bar (terminal) or as a line (plain). */
  notice(text: string): void {
    if (this.tty) {
      this.note = text;
      if (this.current) this.draw(true);
    } else this.line(text);
  }

  private status(e: ProgressEvent): string {
    const [one, many] = UNITS[e.unit];
    // units per ms, measured in this run; within a part of it (T5 after CLIP) from that part's units alone
    const c = this.current;
    const inPart = c && c.part === e.part && e.done > c.partDone && e.elapsedMs > c.partMs;
    const rate = inPart ? (e.done - c.partDone) / (e.elapsedMs - c.partMs) : e.elapsedMs > 0 ? e.done / e.elapsedMs : 0;
    const eta = rate > 0 ? (e.total - e.done) / rate : Infinity;
    const per = e.done > 0 ? e.elapsedMs / e.done : 0;
    if (e.unit === 'byte') return `${(e.done / 1e6).toFixed(1)}/${(e.total / 1e6).toFixed(1)} MB  ETA ${seconds(eta)}`;
    if (e.step !== undefined && e.steps !== undefined) {
      const perStep = e.total / e.steps;
      const inStep = e.done - (e.step - 1) * perStep;
      return `step ${e.step}/${e.steps}  ${one} ${inStep}/${perStep}  ${seconds(per)}/${one}  ETA ${seconds(eta)}`;
    }
    return `${e.part !== e.stage && e.stage !== 'load' ? `${e.part} ` : ''}${e.done}/${e.total} ${e.total === 1 ? one : many}  ${seconds(per)}/${one}  ETA ${seconds(eta)}`;
  }

  private draw(force = false): void {
    const c = this.current;
    if (!c) return;
    const t = this.now();
    if (!force && t - this.lastDraw < 100) return;
    this.lastDraw = t;
    const e = c.last;
    const width = 24;
    const fill = Math.round((width * e.done) / Math.max(1, e.total));
    let text = `${c.label.padEnd(8)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${this.status(e)}${this.note ? `  ${this.note}` : ''}`;
    const cols = this.stream.columns ?? 100;
    if (text.length > cols - 1) text = `${text.slice(0, cols - 2)}…`;
    this.stream.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }

  /** The pipeline's onProgress. */
  onProgress(e: ProgressEvent): void {
    if (e.stage === 'preview' && e.part !== 'latent-rgb') return; // a vae preview inside a step: the step's bar stays
    const l = label(e);
    if (!this.current || this.current.label !== l || e.done <= this.current.last.done) {
      this.current = { label: l, last: e, part: e.part, partDone: 0, partMs: 0 };
      this.lastPlain = this.now();
      if (!this.tty && e.elapsedMs > this.interval) this.plain(e);
    } else if (this.current.part !== e.part) {
      const prev = this.current.last;
      Object.assign(this.current, { part: e.part, partDone: prev.done, partMs: prev.elapsedMs });
    }
    this.current.last = e;
    if (this.tty) this.draw(e.done === e.total);
    else if (this.now() - this.lastPlain >= this.interval) this.plain(e);
    // runs without stage start/end of their own (loading, fitting the preview map) end with their last unit
    if (e.done === e.total && (e.stage === 'load' || e.stage === 'preview' || e.stage === 'download')) this.finish(l, e.elapsedMs);
  }

  private plain(e: ProgressEvent): void {
    this.lastPlain = this.now();
    this.stream.write(`${label(e)}: ${this.status(e)}\n`);
  }

  private finish(l: string, ms: number, detail = ''): void {
    this.note = '';
    if (this.current?.label === l) this.current = null;
    this.line(`${l}: ${seconds(ms)}${detail}`);
  }

  /** The pipeline's onStage: a stage's end prints its time (the denoising's with its steps). */
  onStage(stage: Stage, event: 'start' | 'end', ms?: number): void {
    if (event !== 'end') return;
    const steps = stage === 'denoise' ? this.current?.last.steps : undefined;
    this.finish(stage, ms ?? 0, steps ? `, ${steps} step${steps > 1 ? 's' : ''} (${seconds((ms ?? 0) / steps)} per step)` : '');
  }

  /** One line per step in plain mode (the terminal's bar shows the steps). */
  onStep(step: number, total: number, stepMs: number, elapsedMs: number): void {
    if (this.tty) return;
    const eta = (elapsedMs / step) * (total - step);
    this.stream.write(`step ${step}/${total}: ${seconds(stepMs)} (ETA ${seconds(eta)})\n`);
  }

  /** Leaves the terminal on a fresh line. */
  end(): void {
    this.clear();
    this.current = null;
  }
}
