/**
 * `pnpm flux serve --model PATH [--host 127.0.0.1] [--port 8080] [--token T ...]`: the DeepInfra-compatible
 * HTTP server (packages/server). Parse, load (each model on a generation thread of its own), listen, and shut down
 * gracefully on SIGINT / SIGTERM (signals.ts).
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';
import { modelsOption, numberOption as num, residencyOption } from '../options.ts';
import { onShutdownSignals } from '../signals.ts';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  RedisJobQueue,
  ThreadedGenerator,
  createServer,
  isLoopbackHost,
  parseRetrySchedule,
  sqliteAvailable,
  tokensFromEnv,
  type Generator,
  type JobQueue,
  type JobStatus,
} from '@flux-ts/server';

/** Where the job journal lives unless --journal says otherwise. */
const DEFAULT_JOURNAL = join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'flux-ts', 'jobs.sqlite');

const USAGE = `usage: pnpm flux serve --model PATH [options]

Serve FLUX.1 over HTTP, compatible with DeepInfra's API:
  POST /v1/inference/black-forest-labs/FLUX-1-schnell (FLUX-1-dev for a dev model), multipart or JSON
  GET|DELETE /v1/inference/requests/ID, GET /v1/inference/requests/ID/events (server-sent events)
  POST /v1/openai/images/generations|edits, GET /v1/openai/models, GET /healthz, GET /metrics
  GET / (a web page), GET /docs (API docs), GET /openapi.json

options:
  --model PATH             a FLUX.1 model (diffusers folder, BFL file, HF cache snapshot or repo id); give it
                           twice to serve a schnell and a dev model (default: $FLUX_MODEL)
  --host H                 listen address (default 127.0.0.1)
  --port P                 port (default 8080; 0 picks a free one)
  --token T                accepted bearer token (repeatable; also $FLUX_API_TOKENS, comma separated)
  --no-auth                serve without tokens on a non-loopback address (refused otherwise)
  --max-queue N            waiting jobs per model before 429 (default 16; with --redis: waiting + running
                           jobs on the shared queue)
  --redis URL              put jobs on a shared Redis queue (BullMQ) for \`pnpm flux worker\` processes instead
                           of generating here (default: in-process; also $FLUX_REDIS_URL)
  --redis-prefix P         queue name / key prefix shared with the workers (default flux)
  --journal PATH           the job journal (SQLite; without --redis): queued jobs, interrupted ones and owed
                           webhooks survive a crash (default ${DEFAULT_JOURNAL})
  --no-journal             keep jobs in memory only (a killed server loses queued jobs and owed webhooks)
  --result-ttl S           seconds a finished job's status and result can be fetched (default 3600)
  --max-body-mb N          largest request body, multipart forms counted part by part (default 16)
  --max-upload-mb N        largest uploaded image file (default 10)
  --max-image-pixels N     largest input image as its header declares it, width x height (default 16777216,
                           4096 x 4096); larger ones get a 422 before any decoding
  --request-timeout S      seconds to receive a whole request, headers and body (default 120; then 408)
  --shutdown-timeout S     seconds a graceful shutdown may take before jobs are cancelled and connections
                           closed (default 300)
  --cost-per-image X       inference_status.cost per image (default 0)
  --webhook-secret S       sign webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature;
                           a whsec_<base64> secret, or any string), plus the older X-Flux-Signature; also
                           $FLUX_WEBHOOK_SECRET. Make one: echo whsec_$(openssl rand -base64 32)
  --webhook-retries LIST   delays before each retry, e.g. 5s,5m,30m,2h (default 5s,5m,30m,2h,5h,10h,10h)
  --allow-private-webhooks allow webhooks to loopback / private / link-local addresses (tests, development)
  --shutdown MODE          on SIGINT/SIGTERM: finish (default) or cancel queued and running jobs; a second
                           signal (a second later or more) exits at once
  --log-level L            pino level (default info); --log-prompts logs prompt text at info
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
        host: { type: 'string' },
        port: { type: 'string', short: 'p' },
        token: { type: 'string', multiple: true },
        'no-auth': { type: 'boolean' },
        'max-queue': { type: 'string' },
        redis: { type: 'string' },
        'redis-prefix': { type: 'string' },
        journal: { type: 'string' },
        'no-journal': { type: 'boolean' },
        'result-ttl': { type: 'string' },
        'webhook-retries': { type: 'string' },
        'max-body-mb': { type: 'string' },
        'max-upload-mb': { type: 'string' },
        'max-image-pixels': { type: 'string' },
        'request-timeout': { type: 'string' },
        'shutdown-timeout': { type: 'string' },
        'cost-per-image': { type: 'string' },
        'webhook-secret': { type: 'string' },
        'allow-private-webhooks': { type: 'boolean' },
        shutdown: { type: 'string' },
        'log-level': { type: 'string' },
        'log-prompts': { type: 'boolean' },
        backend: { type: 'string' },
        residency: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${(e as Error).message}; see pnpm flux serve --help`);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const models = modelsOption(values, 'serve', 'the model to serve');
  const shutdown = (values.shutdown as string | undefined) ?? 'finish';
  if (shutdown !== 'finish' && shutdown !== 'cancel') throw new FluxError('INVALID_ARGUMENT', `--shutdown must be finish or cancel, got ${shutdown}`);
  const residency = residencyOption(values.residency as string | undefined);
  const port = num('port', values.port as string | undefined, 8080);
  if (!Number.isInteger(port) || port > 65535) throw new FluxError('INVALID_ARGUMENT', `--port must be an integer 0..65535, got ${String(values.port)}`);
  const tokens = [...((values.token as string[] | undefined) ?? []), ...tokensFromEnv(process.env.FLUX_API_TOKENS)];

  const host = (values.host as string | undefined) ?? '127.0.0.1';
  if (tokens.length === 0 && values['no-auth'] !== true && !isLoopbackHost(host)) {
    throw new FluxError('INVALID_ARGUMENT', `refusing to listen on ${host} without auth: give --token T (or FLUX_API_TOKENS), listen on 127.0.0.1, or pass --no-auth to serve anyone who can reach ${host}`);
  }

  const generators: Generator[] = [];
  for (const m of models) generators.push(await ThreadedGenerator.open(m, { options: { transformer: residency }, backend: values.backend as string | undefined }));

  const maxQueued = num('max-queue', values['max-queue'] as string | undefined, 16, 0);
  const resultTtlS = num('result-ttl', values['result-ttl'] as string | undefined, 3600, 1);
  const retries = values['webhook-retries'] as string | undefined;
  const webhookRetryScheduleMs = retries === undefined ? undefined : parseRetrySchedule(retries);
  const redisUrl = (values.redis as string | undefined) ?? process.env.FLUX_REDIS_URL;
  const journal = journalOption(values, redisUrl !== undefined);
  let shared: RedisJobQueue | undefined;
  if (redisUrl) {
    const q = await RedisJobQueue.connect({ url: redisUrl, prefix: values['redis-prefix'] as string | undefined, maxQueued, resultTtlS });
    shared = q;
    process.stderr.write(`jobs go to the Redis queue "${values['redis-prefix'] ?? 'flux'}" at ${new URL(redisUrl).host}; start workers with pnpm flux worker --redis URL\n`);
  }

  const server = await createServer({
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
    noAuth: values['no-auth'] === true,
    maxQueued,
    resultTtlS,
    ...(journal ? { journal } : {}),
    ...(webhookRetryScheduleMs ? { webhookRetryScheduleMs } : {}),
    bodyLimit: Math.round(num('max-body-mb', values['max-body-mb'] as string | undefined, 16, 0.001) * 1024 * 1024),
    uploadLimit: Math.round(num('max-upload-mb', values['max-upload-mb'] as string | undefined, 10, 0.001) * 1024 * 1024),
    maxImagePixels: Math.round(num('max-image-pixels', values['max-image-pixels'] as string | undefined, 4096 * 4096, 1)),
    requestTimeoutMs: Math.round(num('request-timeout', values['request-timeout'] as string | undefined, 120, 0.001) * 1000),
    shutdownTimeoutMs: Math.round(num('shutdown-timeout', values['shutdown-timeout'] as string | undefined, 300, 0) * 1000),
    costPerImage: num('cost-per-image', values['cost-per-image'] as string | undefined, 0),
    webhookSecret: (values['webhook-secret'] as string | undefined) ?? process.env.FLUX_WEBHOOK_SECRET,
    allowPrivateWebhooks: values['allow-private-webhooks'] === true,
    shutdown,
    logger: { level: (values['log-level'] as string | undefined) ?? 'info' },
    logPrompts: values['log-prompts'] === true,
  });
  const url = await server.listen({ host, port });
  if (journal) process.stderr.write(`job journal: ${journal}\n`);
  const served = generators.map((g) => `${url}/v1/inference/black-forest-labs/FLUX-1-${g.variant}`).join(', ');
  process.stderr.write(`serving ${served}${tokens.length ? '' : ' (no auth)'}\n`);

  await new Promise<void>((resolve) => {
    onShutdownSignals({
      drain: (sig) => {
        process.stderr.write(`${sig}: shutting down (${shutdown === 'cancel' ? 'cancelling' : 'finishing'} jobs, delivering webhooks; send it again to exit now)\n`);
        void server.close().then(resolve);
      },
      exitNow: (sig) => {
        process.stderr.write(`${sig} again: exiting now\n`);
        process.exit(1);
      },
    });
  });
  return 0;
}

/** --journal PATH, --no-journal, or the default (none with --redis: Redis keeps the jobs). */
function journalOption(values: Record<string, unknown>, redis: boolean): string | undefined {
  const given = values.journal as string | undefined;
  if (values['no-journal'] === true) {
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
