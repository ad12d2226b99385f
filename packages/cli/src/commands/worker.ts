/**
 * `pnpm flux worker --model PATH --redis redis://HOST:6379`: a generation worker for `flux serve --redis`. Run any
 * number of them, on any machines that reach the Redis server; each takes one job at a time from the shared queue.
 */
import { FluxError } from '@flux-ts/core';
import type { CommandSpec } from '../command.ts';
import { modelsOption, num, precisionOption, RUNTIME_OPTIONS, SERVED_MODELS_OPTIONS, str, type CliResidency } from '../options.ts';
import { onShutdownSignals } from '../signals.ts';
import { initBackend } from '@flux-ts/flux';
import { PipelineGenerator, startRedisWorker, type Generator } from '@flux-ts/server/worker';

export const command: CommandSpec = {
  name: 'worker',
  usage: '--model PATH --redis redis://HOST:6379 [options]',
  description: 'Take generation jobs from the shared Redis queue that `flux-ts serve --redis URL` fills.',
  groups: [
    { title: 'model', options: [{ ...SERVED_MODELS_OPTIONS.options[0]!, help: 'the model(s) to generate with (as for serve; give the same ones) (default: $FLUX_MODEL)' }] },
    {
      title: 'queue',
      options: [
        { name: 'redis', type: 'string', arg: 'URL', help: 'redis://[user:pass@]host:port[/db] (default: $FLUX_REDIS_URL)' },
        { name: 'prefix', type: 'string', arg: 'P', help: 'queue name / key prefix shared with the servers (default flux)' },
        { name: 'concurrency', type: 'integer', arg: 'N', min: 1, help: 'jobs at once in this process (default 1)' },
        { name: 'lock-ms', type: 'number', arg: 'N', min: 100, help: 'job lock time; a worker silent this long is taken for dead (default 120000)' },
        { name: 'stalled-check-ms', type: 'number', arg: 'N', min: 100, help: 'how often to look for jobs of dead workers (default 30000)' },
        { name: 'max-stalled', type: 'integer', arg: 'N', min: 0, help: 'times a job may lose its worker before it fails (default 1; same on all workers)' },
        { name: 'result-ttl', type: 'number', arg: 'S', min: 1, help: "seconds a result is kept in Redis for status look-ups (default 3600; give the servers' --result-ttl)" },
        { name: 'cost-per-image', type: 'number', arg: 'X', min: 0, help: 'inference_status.cost per image (default 0)' },
      ],
    },
    RUNTIME_OPTIONS,
  ],
  async run(args) {
    const models = modelsOption(args, 'worker', 'the model');
    const url = str(args, 'redis') ?? process.env.FLUX_REDIS_URL;
    if (!url) throw new FluxError('INVALID_ARGUMENT', 'give the shared queue: --redis redis://HOST:6379 (or set FLUX_REDIS_URL); see pnpm flux worker --help');
    const residency = (str(args, 'residency') ?? 'auto') as CliResidency;

    const generators: Generator[] = [];
    const precision = precisionOption(args);
    for (const m of models) generators.push(await PipelineGenerator.open(m, { transformer: residency, precision }));
    await initBackend({ backend: str(args, 'backend'), quiet: true });

    const worker = await startRedisWorker({
      url,
      generators,
      prefix: str(args, 'prefix'),
      concurrency: num(args, 'concurrency', 1),
      lockDurationMs: num(args, 'lock-ms', 120_000),
      stalledIntervalMs: num(args, 'stalled-check-ms', 30_000),
      maxStalledCount: num(args, 'max-stalled', 1),
      resultTtlS: num(args, 'result-ttl', 3600),
      costPerImage: num(args, 'cost-per-image', 0),
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
  },
};
