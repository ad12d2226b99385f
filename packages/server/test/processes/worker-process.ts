/**
 * A `flux worker` process for the tests that SIGKILL workers: the same `startRedisWorker` the CLI runs, with the
 * tiny pipeline slowed down on its generation thread (slow-pipeline.ts). Config: one JSON argument. Prints
 * "worker NAME ready:" on stderr and logs "job ID started" lines, like the CLI.
 */
import { ThreadedGenerator } from '../../src/threaded-generator.ts';
import { startRedisWorker } from '../../src/redis-worker.ts';

const cfg = JSON.parse(process.argv[2]!) as { url: string; prefix: string; model: string; stepDelayMs: number; lockMs: number; stalledMs: number; maxStalled: number };
const gen = await ThreadedGenerator.fromModule(new URL('./slow-pipeline.ts', import.meta.url), { model: cfg.model, stepDelayMs: cfg.stepDelayMs, backend: process.env.FLUX_BACKEND });
const worker = await startRedisWorker({
  url: cfg.url,
  prefix: cfg.prefix,
  generators: [gen],
  lockDurationMs: cfg.lockMs,
  stalledIntervalMs: cfg.stalledMs,
  maxStalledCount: cfg.maxStalled,
  log: (msg) => process.stderr.write(`${msg}\n`),
});
process.stderr.write(`worker ${worker.name} ready: FLUX-1-${gen.variant}\n`);
process.on('SIGTERM', () => void worker.close().then(() => process.exit(0))); // (may come twice: group + tsx's relay)
