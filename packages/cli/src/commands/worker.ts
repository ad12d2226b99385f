/**
 * `pnpm flux worker --model PATH --redis redis://HOST:6379`: a generation worker for `flux serve --redis`. Run any
 * number of them, on any machines that reach the Redis server; each takes one job at a time from the shared queue.
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';
import { modelsOption, numberOption as num, residencyOption } from '../options.ts';
import { onShutdownSignals } from '../signals.ts';
import { initBackend } from '@flux-ts/flux';
import { PipelineGenerator, startRedisWorker, type Generator } from '@flux-ts/server/worker';

const USAGE = `usage: pnpm flux worker --model PATH --redis redis://HOST:6379 [options]

Take generation jobs from the shared Redis queue that \`pnpm flux serve --redis URL\` fills.

options:
  --model PATH             the model(s) to generate with (as for serve; give the same ones) (default: $FLUX_MODEL)
  --redis URL              redis://[user:pass@]host:port[/db] (default: $FLUX_REDIS_URL)
  --prefix P               queue name / key prefix shared with the servers (default flux)
  --concurrency N          jobs at once in this process (default 1)
  --lock-ms N              job lock time; a worker silent this long is taken for dead (default 120000)
  --stalled-check-ms N     how often to look for jobs of dead workers (default 30000)
  --max-stalled N          times a job may lose its worker before it fails (default 1; same on all workers)
  --result-ttl S           seconds a result is kept in Redis for status look-ups (default 3600; give the servers'
                           --result-ttl)
  --cost-per-image X       inference_status.cost per image (default 0)
  --backend B              auto (default), tensorflow, wasm or cpu
  --residency R            transformer weights: auto (default), streamed or resident
  -h, --help               show this help`;

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string', short: 'm', multiple: true },
        redis: { type: 'string' },
        prefix: { type: 'string' },
        concurrency: { type: 'string' },
        'lock-ms': { type: 'string' },
        'stalled-check-ms': { type: 'string' },
        'max-stalled': { type: 'string' },
        'result-ttl': { type: 'string' },
        'cost-per-image': { type: 'string' },
        backend: { type: 'string' },
        residency: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${(e as Error).message}; see pnpm flux worker --help`);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const models = modelsOption(values, 'worker', 'the model');
  const url = (values.redis as string | undefined) ?? process.env.FLUX_REDIS_URL;
  if (!url) throw new FluxError('INVALID_ARGUMENT', 'give the shared queue: --redis redis://HOST:6379 (or set FLUX_REDIS_URL); see pnpm flux worker --help');
  const residency = residencyOption(values.residency as string | undefined);

  const generators: Generator[] = [];
  for (const m of models) generators.push(await PipelineGenerator.open(m, { transformer: residency }));
  await initBackend({ backend: values.backend as string | undefined, quiet: true });

  const worker = await startRedisWorker({
    url,
    generators,
    prefix: values.prefix as string | undefined,
    concurrency: num('concurrency', values.concurrency as string | undefined, 1, 1),
    lockDurationMs: num('lock-ms', values['lock-ms'] as string | undefined, 120_000, 100),
    stalledIntervalMs: num('stalled-check-ms', values['stalled-check-ms'] as string | undefined, 30_000, 100),
    maxStalledCount: num('max-stalled', values['max-stalled'] as string | undefined, 1, 0),
    resultTtlS: num('result-ttl', values['result-ttl'] as string | undefined, 3600, 1),
    costPerImage: num('cost-per-image', values['cost-per-image'] as string | undefined, 0),
    log: (msg) => process.stderr.write(`${new Date().toISOString()} ${msg}\n`),
  });
  process.stderr.write(`worker ${worker.name} ready: ${generators.map((g) => `FLUX-1-${g.variant}`).join(', ')} from ${new URL(url).host}\n`);

  await new Promise<void>((resolve) => {
    onShutdownSignals({
      drain: (sig) => {
        process.stderr.write(`${sig}: finishing the running job, then stopping (send it again to exit now)\n`);
        void worker.close().then(resolve);
      },
      exitNow: (sig) => {
        process.stderr.write(`${sig} again: exiting now (the running job goes back to the queue once its lock expires)\n`);
        process.exit(1);
      },
    });
  });
  // With Redis unreachable BullMQ's sockets keep retrying after close; nothing is left to do, so do not linger.
  setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  return 0;
}
