/**
 * Download progress for humans, on stderr. On a TTY: one redrawn line with a bar, bytes, speed and ETA.
 * Otherwise (CI logs, pipes): plain lines, one per file started / finished and one every `intervalMs`.
 */
import type { DownloadEvent } from './download.ts';

export { formatBytes, formatDuration } from '../format.ts';
import { formatBytes, formatDuration } from '../format.ts';

export interface ProgressOptions {
  stream: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  /** Default: stream.isTTY. */
  tty?: boolean;
  /** Plain mode: a progress line at most this often (default 10 s). TTY mode redraws at most every 100 ms. */
  intervalMs?: number;
  now?: () => number;
}

export interface ProgressReporter {
  /** Pass as downloadRepo's `onEvent`. */
  onEvent: (e: DownloadEvent) => void;
  /** Call when the download finished or failed, so a TTY line is not left half drawn. */
  end: () => void;
}

export function createProgressReporter(opts: ProgressOptions): ProgressReporter {
  const { stream } = opts;
  const tty = opts.tty ?? !!stream.isTTY;
  const now = opts.now ?? (() => Date.now());
  const interval = tty ? 100 : (opts.intervalMs ?? 10_000);
  let total = 0; // bytes to fetch this run
  let completed = 0; // bytes of the files finished this run
  let fileBytes = 0; // bytes of the current file on disk (a resumed prefix counts as done, not towards the speed)
  let fileSize = 0;
  let fetched = 0; // network bytes, for the speed
  let started = 0;
  let lastDraw = 0;
  let current = '';
  let drawn = false;

  const status = () => {
    const done = completed + fileBytes;
    const secs = (now() - started) / 1000;
    const speed = secs > 0 ? fetched / secs : 0;
    const eta = speed > 0 ? (total - done) / speed : Infinity;
    const pct = total ? Math.min(100, (100 * done) / total) : 100;
    return { pct, text: `${formatBytes(done)}/${formatBytes(total)} ${formatBytes(speed)}/s ETA ${formatDuration(eta)}` };
  };
  const clearLine = () => {
    if (tty && drawn) stream.write('\r\x1b[2K');
    drawn = false;
  };
  const line = (s: string) => {
    clearLine();
    stream.write(`${s}\n`);
  };
  const draw = (force = false) => {
    const t = now();
    if (!force && t - lastDraw < interval) return;
    lastDraw = t;
    const { pct, text } = status();
    if (tty) {
      const width = 24;
      const fill = Math.round((pct / 100) * width);
      const bar = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct.toFixed(0).padStart(3)}% ${text} ${current}`;
      const cols = stream.columns ?? 100;
      stream.write(`\r\x1b[2K${bar.length > cols - 1 ? `${bar.slice(0, cols - 2)}…` : bar}`);
      drawn = true;
    } else {
      stream.write(`  ${pct.toFixed(1)}% ${text} (${current})\n`);
    }
  };

  const onEvent = (e: DownloadEvent) => {
    switch (e.type) {
      case 'plan': {
        total = e.downloadBytes;
        started = now();
        lastDraw = started;
        const cached = e.files.filter((f) => f.cached).length;
        line(
          `${e.repo} @ ${e.commit.slice(0, 10)}: ${e.files.length} files, ${formatBytes(e.totalBytes)}` +
            (cached ? `; ${cached} already present, ${formatBytes(e.downloadBytes)} to download` : ''),
        );
        break;
      }
      case 'start':
        current = e.path;
        fileBytes = e.offset;
        fileSize = e.size;
        if (tty) draw(true);
        else line(`downloading ${e.path} (${formatBytes(e.size)}${e.offset ? `, resuming at ${formatBytes(e.offset)}` : ''})`);
        break;
      case 'progress':
        fileBytes = e.bytes;
        fetched += e.delta;
        draw();
        break;
      case 'restart':
        line(`${e.path}: ${e.reason}; starting that file over`);
        break;
      case 'retry':
        line(`network error (${e.reason}); retry ${e.attempt} in ${formatDuration(e.delayMs / 1000)}`);
        break;
      case 'done':
        if (e.status === 'downloaded') {
          completed += fileSize;
          fileBytes = 0;
          if (tty) draw(true);
          else line(`done ${e.path}`);
        }
        break;
    }
  };
  return { onEvent, end: () => clearLine() };
}
