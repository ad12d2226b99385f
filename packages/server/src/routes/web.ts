/**
 * The web page (GET /) and the interactive API docs (GET /docs), plus /openapi.json: public static files served by
 * the server itself from packages/server/src/web (no CDN: the machines may have no internet). They reveal nothing
 * the README does not; every API call they make needs the token like any other client's. A strict
 * Content-Security-Policy allows scripts, styles and connections to this origin only.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { ServerContext } from '../context.ts';
import { buildOpenApi } from '../openapi.ts';

/** The static files: beside this module's folder in the source (src/web), or in src/web of the package when this
 *  module runs built (dist/routes/web.js: tsc copies no HTML, and the package ships src). */
const WEB = existsSync(new URL('../web/index.html', import.meta.url)) ? new URL('../web/', import.meta.url) : new URL('../../src/web/', import.meta.url);
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The static files, read once: route path -> [file, content type]. */
const FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/docs': ['docs.html', 'text/html; charset=utf-8'],
  '/ui/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/ui/docs.js': ['docs.js', 'text/javascript; charset=utf-8'],
  '/ui/style.css': ['style.css', 'text/css; charset=utf-8'],
  '/ui/docs.css': ['docs.css', 'text/css; charset=utf-8'],
};

export function registerWebRoutes(ctx: ServerContext): void {
  const { app } = ctx;
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, WEB));
    app.get(path, { config: { public: true } }, async (_req, reply) =>
      reply.header('content-type', type).header('content-security-policy', CSP).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').send(body),
    );
  }
  const doc = JSON.stringify(buildOpenApi({ models: [...ctx.generators.keys()] }));
  app.get('/openapi.json', { config: { public: true } }, async (_req, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(doc));
}
