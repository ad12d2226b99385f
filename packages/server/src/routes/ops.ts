/** GET /healthz and GET /metrics (Prometheus): public, for load balancers and scrapers. */
import type { ServerContext } from '../context.ts';

export function registerOpsRoutes(ctx: ServerContext): void {
  const { app, queue, generators, metrics } = ctx;
  app.get('/healthz', { config: { public: true } }, async () => ({
    status: 'ok',
    models: [...generators.keys()],
    queue_depth: await queue.depth(),
    running: await queue.running(),
    // whether API calls need a token (the web page shows its token field then)
    auth: ctx.authEnabled,
  }));
  app.get('/metrics', { config: { public: true } }, async (_req, reply) => {
    for (const m of generators.keys()) {
      metrics.queueDepth.set({ model: m }, await queue.depth(m));
      metrics.jobsRunning.set({ model: m }, await queue.running(m));
    }
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
