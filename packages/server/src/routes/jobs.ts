/**
 * Job routes: GET /v1/inference/requests/:id (status), DELETE (cancel), GET .../events (server-sent events:
 * `status` first, then queued / running / step / succeeded | failed | cancelled as they happen).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { JobQueue } from '../job-queue.ts';
import { apiError } from '../responses.ts';

export function registerJobRoutes(app: FastifyInstance, queue: JobQueue): void {
  const notFound = (reply: FastifyReply, id: string) =>
    reply.code(404).send(apiError('request_not_found', `no request ${id} (unknown, or finished long ago and forgotten)`));

  app.get<{ Params: { id: string } }>('/v1/inference/requests/:id', async (req, reply) => {
    const s = await queue.get(req.params.id);
    return s ? reply.send(s) : notFound(reply, req.params.id);
  });

  app.delete<{ Params: { id: string } }>('/v1/inference/requests/:id', async (req, reply) => {
    const { id } = req.params;
    const before = await queue.get(id);
    if (!before) return notFound(reply, id);
    if (!(await queue.cancel(id))) {
      return reply.code(409).send({ ...apiError('not_cancellable', `request ${id} already ${before.status}`), request_id: id, status: before.status });
    }
    const after = (await queue.get(id)) ?? { ...before, status: 'cancelled' as const };
    // A running job stops at its next step; its status turns "cancelled" then.
    return reply.code(202).send({ request_id: id, status: after.status === 'running' ? 'cancelling' : after.status });
  });

  app.get<{ Params: { id: string } }>('/v1/inference/requests/:id/events', async (req, reply) => {
    const { id } = req.params;
    const s = await queue.get(id);
    if (!s) return notFound(reply, id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': id });
    const write = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    const { result: _r, ...brief } = s;
    write('status', brief);
    const terminal = (t: string) => t === 'succeeded' || t === 'failed' || t === 'cancelled';
    if (terminal(s.status)) {
      write(s.status, s.status === 'succeeded' ? { request_id: id, result: s.result } : { request_id: id, error: s.error });
      res.end();
      return;
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    let ended = false;
    const stop = queue.subscribe(id, (e) => {
      if (ended) return;
      const { type, ...data } = e;
      write(type, data);
      if (terminal(type)) end();
    });
    function end() {
      ended = true;
      clearInterval(heartbeat);
      stop();
      if (!res.writableEnded) res.end();
    }
    res.on('close', end);
    // A job that ended between the look-up above and the subscription (a shared queue answers asynchronously).
    const now = await queue.get(id);
    if (!ended && now && terminal(now.status)) {
      write(now.status, now.status === 'succeeded' ? { request_id: id, result: now.result } : { request_id: id, error: now.error });
      end();
    }
  });
}
