/**
 * The shape of the server package: a worker process (`flux worker`, packages/server/src/worker.ts) never loads the HTTP
 * server (Fastify, server.ts, routes/), read from the import graph of the source; and the test-only delay knob is
 * gone from production code.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ServerMetrics } from '../src/index.ts';

const SRC = new URL('../src/', import.meta.url).pathname;
const CLI = new URL('../../cli/src/', import.meta.url).pathname;

/** Every module a file reaches through its static imports (relative ones followed; packages listed by name). */
function reach(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|await import\('([^']+)'\)/gm)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  };
  visit(entry);
  return { files, packages };
}

describe('structure', () => {
  it('the worker entry reaches no HTTP server code', () => {
    const { files, packages } = reach(join(SRC, 'worker.ts'));
    const names = [...files].map((f) => relative(SRC, f));
    expect(names).toContain('redis-worker.ts');
    expect(names).toContain('job-worker.ts');
    for (const n of names) expect(n === 'server.ts' || n.startsWith('routes/') || n === 'context.ts', n).toBe(false);
    expect([...packages].filter((p) => p === 'fastify' || p.startsWith('@fastify'))).toEqual([]);
    expect(packages).toContain('bullmq');
    // and the worker command imports only that entry of the server package
    const cli = readFileSync(join(CLI, 'commands', 'worker.ts'), 'utf8');
    expect(cli).toMatch(/from '@flux-ts\/server\/worker'/);
    expect(cli).not.toMatch(/from '@flux-ts\/server'/);
    // (control: the main entry does reach Fastify)
    expect(reach(join(SRC, 'index.ts')).packages).toContain('fastify');
  });

  it('has no test-only knob in production code', () => {
    const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    for (const f of files) expect(readFileSync(join(SRC, f), 'utf8'), f).not.toMatch(/FLUX_WORKER_STEP_DELAY_MS|stepDelayMs/);
  });

  it('measures job runtimes up to hours (CPU jobs take longer than 600 s)', async () => {
    const m = new ServerMetrics();
    m.runtime.observe({ model: 'm' }, 3000);
    const text = await m.registry.metrics();
    expect(text).toMatch(/flux_job_runtime_seconds_bucket\{le="3600",model="m"\} 1/);
    expect(text).toMatch(/flux_job_runtime_seconds_bucket\{le="1800",model="m"\} 0/);
  });
});
