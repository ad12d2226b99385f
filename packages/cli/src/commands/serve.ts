/**
 * `pnpm flux serve --model PATH [--host 127.0.0.1] [--port 8080] [--token T ...]`: the DeepInfra-compatible
 * HTTP server (packages/server). Parse, load (each model on a generation thread of its own), listen, and shut down
 * gracefully on SIGINT / SIGTERM (signals.ts).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FluxError } from '@flux-ts/core';
import type { CommandSpec, ParsedArgs } from '../command.ts';
import { flag, modelsOption, num, precisionOption, RUNTIME_OPTIONS, SERVED_MODELS_OPTIONS, str, type CliResidency } from '../options.ts';
import { onShutdownSignals } from '../signals.ts';
import {
  RedisJobQueue,
  ThreadedGenerator,
  createServer,
  isLoopbackHost,
  parseRetrySchedule,
  sqliteAvailable,
  tokensFromEnv,
  type FluxServer,
  type Generator,
  type JobQueue,
  type JobStatus,
} from '@flux-ts/server';

const DEFAULT_JOURNAL = join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'flux-ts', 'jobs.sqlite');

export const command: CommandSpec = {
  name: 'serve',
  usage: '--model PATH [options]',
  description: `Serve FLUX.1 over HTTP, compatible with DeepInfra's API:
  POST /v1/inference/black-forest-labs/FLUX-1-schnell (FLUX-1-dev for a dev model), multipart or JSON
  GET|DELETE /v1/inference/requests/ID, GET /v1/inference/requests/ID/events (server-sent events)
  POST /v1/openai/images/generations|edits, GET /v1/openai/models, GET /healthz, GET /metrics
  GET / (a web page), GET /docs (API docs), GET /openapi.json`,
  groups: [
    SERVED_MODELS_OPTIONS,
    {
      title: 'listening and auth',
      options: [
        { name: 'host', type: 'string', arg: 'H', help: 'listen address (default 127.0.0.1)' },
        { name: 'port', short: 'p', type: 'integer', arg: 'P', min: 0, max: 65535, help: 'port (default 8080; 0 picks a free one)' },
        { name: 'token', type: 'string', arg: 'T', multiple: true, help: 'accepted bearer token (repeatable; also $FLUX_API_TOKENS, comma separated)' },
        { name: 'no-auth', type: 'boolean', help: 'serve without tokens on a non-loopback address (refused otherwise)' },
      ],
    },
    {
      title: 'jobs',
      options: [
        { name: 'max-queue', type: 'integer', arg: 'N', min: 0, help: 'waiting jobs per model before 429 (default 16; with --redis: waiting + running jobs on the shared queue)' },
        { name: 'redis', type: 'string', arg: 'URL', help: 'put jobs on a shared Redis queue (BullMQ) for `flux-ts worker` processes instead of generating here (default: in-process; also $FLUX_REDIS_URL)' },
        { name: 'redis-prefix', type: 'string', arg: 'P', help: 'queue name / key prefix shared with the workers (default flux)' },
        { name: 'journal', type: 'string', arg: 'PATH', help: `the job journal (SQLite; without --redis): queued jobs, interrupted ones and owed webhooks survive a crash (default ${DEFAULT_JOURNAL})` },
        { name: 'no-journal', type: 'boolean', help: 'keep jobs in memory only (a killed server loses queued jobs and owed webhooks)' },
        { name: 'result-ttl', type: 'number', arg: 'S', min: 1, help: "seconds a finished job's status and result can be fetched (default 3600)" },
        { name: 'cost-per-image', type: 'number', arg: 'X', min: 0, help: 'inference_status.cost per image (default 0)' },
        { name: 'shutdown', type: 'string', arg: 'MODE', choices: ['finish', 'cancel'], help: 'on SIGINT/SIGTERM: finish (default) or cancel queued and running jobs; a second signal (a second later or more) exits at once' },
      ],
    },
    {
      title: 'limits',
      options: [
        { name: 'max-body-mb', type: 'number', arg: 'N', min: 0.001, help: 'largest request body, multipart forms counted part by part (default 16)' },
        { name: 'max-upload-mb', type: 'number', arg: 'N', min: 0.001, help: 'largest uploaded image file (default 10)' },
        { name: 'any-size', type: 'boolean', help: 'accept any width and height that is a multiple of 16 from 128 to 2048 (1344x768, 1216x832, ...) instead of the seed API\'s list' },
        { name: 'max-image-pixels', type: 'number', arg: 'N', min: 1, help: 'largest input image as its header declares it, width x height (default 16777216, 4096 x 4096); larger ones get a 422 before any decoding' },
        { name: 'request-timeout', type: 'number', arg: 'S', min: 0.001, help: 'seconds to receive a whole request, headers and body (default 120; then 408)' },
        { name: 'shutdown-timeout', type: 'number', arg: 'S', min: 0, help: 'seconds a graceful shutdown may take before jobs are cancelled and connections closed (default 300)' },
      ],
    },
    {
      title: 'webhooks and logs',
      options: [
        { name: 'webhook-secret', type: 'string', arg: 'S', help: 'sign webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature; a whsec_<base64> secret, or any string), plus the older X-Flux-Signature; also $FLUX_WEBHOOK_SECRET. Make one: echo whsec_$(openssl rand -base64 32)' },
        { name: 'webhook-retries', type: 'string', arg: 'LIST', help: 'delays before each retry, e.g. 5s,5m,30m,2h (default 5s,5m,30m,2h,5h,10h,10h)' },
        { name: 'allow-private-webhooks', type: 'boolean', help: 'allow webhooks to loopback / private / link-local addresses (tests, development)' },
        { name: 'log-level', type: 'string', arg: 'L', help: 'pino level (default info)' },
        { name: 'log-prompts', type: 'boolean', help: 'log prompt text at info' },
      ],
    },
    RUNTIME_OPTIONS,
  ],
  async run(args) {
    const models = modelsOption(args, 'serve', 'the model to serve');
    const shutdown = (str(args, 'shutdown') ?? 'finish') as 'finish' | 'cancel';
    const residency = (str(args, 'residency') ?? 'auto') as CliResidency;
    const port = num(args, 'port', 8080);
    const tokens = [...((args.values.token as string[] | undefined) ?? []), ...tokensFromEnv(process.env.FLUX_API_TOKENS)];

    const host = str(args, 'host') ?? '127.0.0.1';
    if (tokens.length === 0 && !flag(args, 'no-auth') && !isLoopbackHost(host)) {
      throw new FluxError('REFUSED', `refusing to listen on ${host} without auth: give --token T (or FLUX_API_TOKENS), listen on 127.0.0.1, or pass --no-auth to serve anyone who can reach ${host}`);
    }

    // Generation threads keep the process alive: whatever fails from here to listening closes what was opened, so the
    // error is printed and the process exits (a port in use, a bad journal, Redis unreachable, a model that fails).
    const redisUrl = str(args, 'redis') ?? process.env.FLUX_REDIS_URL;
    const journal = journalOption(args, redisUrl !== undefined);
    const generators: Generator[] = [];
    let shared: RedisJobQueue | undefined;
    let server: FluxServer | undefined;
    let url: string;
    try {
      const precision = precisionOption(args);
      for (const m of models) generators.push(await ThreadedGenerator.open(m, { options: { transformer: residency, precision }, backend: str(args, 'backend') }));

      const maxQueued = num(args, 'max-queue', 16);
      const resultTtlS = num(args, 'result-ttl', 3600);
      const retries = str(args, 'webhook-retries');
      const webhookRetryScheduleMs = retries === undefined ? undefined : parseRetrySchedule(retries);
      if (redisUrl) {
        const q = await RedisJobQueue.connect({ url: redisUrl, prefix: str(args, 'redis-prefix'), maxQueued, resultTtlS });
        shared = q;
        process.stderr.write(`jobs go to the Redis queue "${str(args, 'redis-prefix') ?? 'flux'}" at ${new URL(redisUrl).host}; start workers with pnpm flux worker --redis URL\n`);
      }

      server = await createServer({
        generators,
        ...(shared
          ? {
              queueFactory: (_worker: unknown, onChange: (s: JobStatus, prev?: string) => void): JobQueue => {
                shared!.onChange = onChange;
                return shared!;
              },
            }
          : {}),
        tokens,
        noAuth: flag(args, 'no-auth'),
        maxQueued,
        resultTtlS,
        ...(journal ? { journal } : {}),
        ...(webhookRetryScheduleMs ? { webhookRetryScheduleMs } : {}),
        bodyLimit: Math.round(num(args, 'max-body-mb', 16) * 1024 * 1024),
        uploadLimit: Math.round(num(args, 'max-upload-mb', 10) * 1024 * 1024),
        maxImagePixels: Math.round(num(args, 'max-image-pixels', 4096 * 4096)),
        anySize: flag(args, 'any-size'),
        requestTimeoutMs: Math.round(num(args, 'request-timeout', 120) * 1000),
        shutdownTimeoutMs: Math.round(num(args, 'shutdown-timeout', 300) * 1000),
        costPerImage: num(args, 'cost-per-image', 0),
        webhookSecret: str(args, 'webhook-secret') ?? process.env.FLUX_WEBHOOK_SECRET,
        allowPrivateWebhooks: flag(args, 'allow-private-webhooks'),
        shutdown,
        logger: { level: str(args, 'log-level') ?? 'info' },
        logPrompts: flag(args, 'log-prompts'),
      });
      url = await server.listen({ host, port });
    } catch (e) {
      if (server) await server.close().catch(() => {});
      else {
        await shared?.close().catch(() => {});
        for (const g of generators) await g.close?.().catch(() => {}); // idle: a graceful close (terminating a thread with TensorFlow loaded crashes the exit)
      }
      throw e;
    }
    if (journal) process.stderr.write(`job journal: ${journal}\n`);
    const served = generators.map((g) => `${url}/v1/inference/black-forest-labs/FLUX-1-${g.variant}`).join(', ');
    process.stderr.write(`serving ${served}${tokens.length ? '' : ' (no auth)'}\n`);

    const running = server;
    await new Promise<void>((resolve) => {
      onShutdownSignals({
        drain: (sig) => {
          process.stderr.write(`${sig}: shutting down (${shutdown === 'cancel' ? 'cancelling' : 'finishing'} jobs, delivering webhooks; send it again to exit now)\n`);
          void running.close().then(resolve);
        },
        exitNow: (sig) => {
          process.stderr.write(`${sig} again: exiting now\n`);
          process.exit(1);
        },
      });
    });
    return 0;
  },
};

/** --journal PATH, --no-journal, or the default (none with --redis: Redis keeps the jobs). */
function journalOption(args: ParsedArgs, redis: boolean): string | undefined {
  const given = str(args, 'journal');
  if (flag(args, 'no-journal')) {
    if (given !== undefined) throw new FluxError('INVALID_ARGUMENT', 'give --journal PATH or --no-journal, not both');
    return undefined;
  }
  if (redis) {
    if (given !== undefined) throw new FluxError('INVALID_ARGUMENT', '--journal is for the in-process queue; with --redis the jobs are kept in Redis');
    return undefined;
  }
  const available = sqliteAvailable();
  if (!available.ok) {
    if (given !== undefined) throw new FluxError('INVALID_ARGUMENT', available.reason);
    process.stderr.write(`warning: no job journal (${available.reason})\n`);
    return undefined;
  }
  return given ?? DEFAULT_JOURNAL;
}
