/**
 * Starting a worker thread from a module of this package. Built JavaScript runs as it is; TypeScript source (the
 * repository run with tsx, or the test runner) needs a loader: Node 22.18+ strips types itself, older Node loads
 * the module through tsx's `tsImport`, resolved from this package.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const nodeStripsTypes = (() => {
  const features = process.features as { typescript?: string | false };
  return typeof features.typescript === 'string';
})();

export function spawnThread(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.pathname.endsWith('.ts') || nodeStripsTypes) return new Worker(entry, options);
  // tsx's ESM build of its API (require.resolve finds the CommonJS one beside it)
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => m.tsImport(${JSON.stringify(entry.href)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(boot, { ...options, eval: true });
}
