/** A webhook receiver on 127.0.0.1 for the tests: records every attempt; answers 503 while `failing`. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Hit {
  id: string;
  event: string;
  requestId: string;
  body: string;
  headers: http.IncomingHttpHeaders;
  answered: number;
}

export async function webhookReceiver() {
  const hits: Hit[] = [];
  const waiters: (() => void)[] = [];
  const state = { failing: false };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const answered = state.failing ? 503 : 200;
      hits.push({ id: String(req.headers['webhook-id']), event: String(req.headers['x-flux-event']), requestId: String(req.headers['x-request-id']), body, headers: req.headers, answered });
      res.writeHead(answered, { connection: 'close' }).end();
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    hits,
    state,
    /** 2xx-answered messages, by webhook-id. */
    delivered: () => hits.filter((h) => h.answered === 200),
    /** Resolves once `until()` holds (checked after each hit). */
    async waitFor(until: () => boolean): Promise<void> {
      while (!until()) await new Promise<void>((r) => waiters.push(r));
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
