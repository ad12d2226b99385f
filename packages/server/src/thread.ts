/**
 * Starting a worker thread from a module of this package. Built JavaScript runs as it is; TypeScript source (the
 * repository run with tsx, or the test runner) is loaded through tsx's `tsImport` (resolved from this package),
 * or by Node's own type stripping (22.18+) where tsx is not installed.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** tsx's ESM API (require.resolve finds the CommonJS build beside it), when tsx is installed. */
function tsxApi(): string | undefined {
  try {
    return pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  } catch {
    return undefined;
  }
}

export function spawnThread(entry: URL, options: WorkerOptions = {}): Worker {
  const tsx = entry.pathname.endsWith('.ts') ? tsxApi() : undefined;
  if (!tsx) return new Worker(entry, options);
  const boot = `import(${JSON.stringify(tsx)}).then((m) => m.tsImport(${JSON.stringify(entry.href)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(boot, { ...options, eval: true });
}
