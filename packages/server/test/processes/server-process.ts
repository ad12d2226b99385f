/**
 * A `flux serve` process for the tests that SIGKILL servers: `createServer` as the CLI calls it, with a blocking
 * test generator on its generation thread (blocking-generator.ts) so a job is still running when the test kills
 * the process. Config: one JSON argument (journal, or redis + prefix; webhook settings). Prints "serving URL".
 */
import { ThreadedGenerator } from '../../src/threaded-generator.ts';
import { RedisJobQueue } from '../../src/redis-queue.ts';
import { createServer } from '../../src/server.ts';

const cfg = JSON.parse(process.argv[2]!) as {
  stepMs: number;
  journal?: string;
  redis?: string;
  prefix?: string;
  secret?: string;
  retriesMs: number[];
  maxQueued?: number;
  webhookStalledMs?: number;
};
const gen = await ThreadedGenerator.fromModule(new URL('../blocking-generator.ts', import.meta.url), { stepMs: cfg.stepMs });
const shared = cfg.redis ? await RedisJobQueue.connect({ url: cfg.redis, prefix: cfg.prefix, maxQueued: cfg.maxQueued ?? 64, pollMs: 200, drainMs: 200, webhookStalledIntervalMs: cfg.webhookStalledMs, webhookLockMs: cfg.webhookStalledMs ? 2000 : undefined }) : undefined;
const server = await createServer({
  generators: [gen],
  ...(shared ? { queueFactory: (_w, onChange) => ((shared.onChange = onChange), shared) } : {}),
  ...(cfg.journal ? { journal: cfg.journal } : {}),
  maxQueued: cfg.maxQueued ?? 64,
  allowPrivateWebhooks: true,
  webhookSecret: cfg.secret,
  webhookRetryScheduleMs: cfg.retriesMs,
  logger: { level: 'warn' },
  defaultMetrics: false,
});
const url = await server.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`serving ${url}\n`);
// (on, not once: a second SIGTERM while closing must not kill the default way)
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
