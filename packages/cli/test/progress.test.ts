/**
 * What `generate` prints while it runs (src/progress.ts), with a fake clock and stream: the terminal bar's ETA from
 * the measured rate (a step's from its blocks, T5's from T5's blocks), finished lines per stage, and plain lines at
 * a bounded rate off a terminal.
 */
import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '@flux-ts/flux';
import { ProgressDisplay } from '../src/progress.ts';

function harness(tty: boolean) {
  let t = 0;
  const out: string[] = [];
  const d = new ProgressDisplay({ stream: { write: (s: string) => out.push(s), columns: 200 }, tty, now: () => t, intervalMs: 10_000 });
  return { d, out, at: (ms: number) => (t = ms) };
}

const ev = (e: Partial<ProgressEvent> & Pick<ProgressEvent, 'stage' | 'done' | 'total' | 'elapsedMs'>): ProgressEvent => ({ part: e.stage, unit: 'block', ...e });

describe('ProgressDisplay', () => {
  it('terminal: one redrawn bar; a step ETA from the blocks measured; a line with the time when the stage ends', () => {
    const { d, out, at } = harness(true);
    at(2000);
    d.onProgress(ev({ stage: 'denoise', part: 'transformer', done: 1, total: 114, step: 1, steps: 2, elapsedMs: 2000 }));
    expect(out.at(-1)).toMatch(/^\r\x1b\[2Kdenoise  \[\.{24}\] step 1\/2  block 1\/57  2\.0 s\/block  ETA 3m46s$/);
    at(116_000);
    d.onProgress(ev({ stage: 'denoise', part: 'transformer', done: 58, total: 114, step: 2, steps: 2, elapsedMs: 116_000 }));
    expect(out.at(-1)).toMatch(/step 2\/2  block 1\/57  2\.0 s\/block  ETA 1m52s$/);
    d.onStage('denoise', 'end', 228_000);
    expect(out.at(-1)).toBe('denoise: 3m48s, 2 steps (1m54s per step)\n');
  });

  it('the text stage: T5 blocks are timed on their own after the quick CLIP layers', () => {
    const { d, out, at } = harness(true);
    for (const [done, ms, part] of [[12, 1200, 'clip'], [13, 5200, 't5'], [14, 9200, 't5']] as const) {
      at(ms);
      d.onProgress(ev({ stage: 'text', part, done, total: 36, elapsedMs: ms }));
    }
    expect(out.at(-1)).toMatch(/t5 14\/36 blocks .* ETA 1m28s$/); // 22 blocks x 4 s, not the stage's average
  });

  it('plain lines off a terminal: stage ends, steps, and at most one progress line per interval', () => {
    const { d, out, at } = harness(false);
    for (let i = 1; i <= 30; i++) {
      at(i * 1000);
      d.onProgress(ev({ stage: 'text', part: 't5', done: i, total: 30, elapsedMs: i * 1000 }));
    }
    d.onStage('text', 'end', 30_000);
    d.onProgress(ev({ stage: 'load', part: 'vae', unit: 'tensor', done: 244, total: 244, elapsedMs: 400 }));
    d.onStep(1, 4, 90_000, 90_000);
    expect(out).toEqual([
      'text: t5 11/30 blocks  1.0 s/block  ETA 19.0 s\n',
      'text: t5 21/30 blocks  1.0 s/block  ETA 9.0 s\n',
      'text: 30.0 s\n',
      'load vae: 400 ms\n',
      'step 1/4: 1m30s (ETA 4m30s)\n',
    ]);
  });
});
