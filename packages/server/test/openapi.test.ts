/**
 * One source of truth: the OpenAPI document (served at /openapi.json) is valid OpenAPI 3.1 and is generated from the
 * zod schema that validates requests; the validator accepts exactly what the document allows (values derived from
 * the document: each bound, one past it, each enum value and its neighbours, null, unknown fields); the README's
 * Parameters table is the field table, its error table is errors.ts's; every error code the server sends is in the
 * table.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { RequestValidationError, describeRequestFields, parseInferenceRequest, requestFieldsMarkdown } from '@flux-ts/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, buildOpenApi, errorCodesMarkdown, type FluxServer } from '../src/index.ts';
import { SlowGenerator, start } from './helpers.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
type Schema = Record<string, any>;

let server: FluxServer;
let doc: Schema;
beforeAll(async () => {
  const s = await start({ generators: [new SlowGenerator(1)], tokens: ['t'] });
  server = s.server;
  const res = await fetch(`${s.url}/openapi.json`); // public: no token
  expect(res.status).toBe(200);
  doc = (await res.json()) as Schema;
});
afterAll(() => server?.close());

/** Does the validator accept `body`? (undefined: accepted; else the fields it rejected) */
function rejected(body: Record<string, unknown>, from: 'json' | 'form' = 'json'): string[] | undefined {
  try {
    parseInferenceRequest(body, { from, randomSeed: () => 1 });
    return undefined;
  } catch (e) {
    if (!(e instanceof RequestValidationError)) throw e;
    return e.fields.map((f) => f.field);
  }
}

/** Values the schema allows and values just outside it, derived from the schema alone. */
function probes(s: Schema): { good: unknown[]; bad: unknown[] } {
  const types: string[] = s.anyOf ? s.anyOf.map((a: Schema) => a.type) : Array.isArray(s.type) ? s.type : [s.type];
  const nullable = types.includes('null');
  const good: unknown[] = nullable ? [null] : [];
  const bad: unknown[] = nullable ? [] : [null];
  const t = types.find((x) => x !== 'null');
  if (s.enum && (t === 'integer' || t === 'number')) {
    const values = s.enum as number[];
    good.push(...values);
    for (const v of values) for (const n of [v - 1, v + 1]) if (!values.includes(n)) bad.push(n);
    bad.push(values[0]! + 0.5, 'x');
  } else if (t === 'integer' || t === 'number') {
    good.push(s.minimum, s.maximum);
    bad.push(s.minimum - 1, s.maximum + (t === 'integer' ? 1 : 0.001), 'x', Number.NaN);
    if (t === 'integer') bad.push(s.minimum + 0.5);
    else good.push((s.minimum + s.maximum) / 2);
  } else if (t === 'string' && s.format === 'uri') {
    good.push('http://example.com/hook', 'https://example.com/hook');
    bad.push('not a url', 3);
  } else if (t === 'string') {
    const max = s.maxLength ?? 100;
    good.push('a', 'a'.repeat(max));
    if (s.maxLength) bad.push('a'.repeat(max + 1));
    bad.push(3, true);
  } else if (t === 'boolean') {
    good.push(true, false);
    bad.push('yes', 1);
  } else if (t === 'array') {
    const items = s.items.enum as string[];
    good.push([items[0]], items.slice(0, s.maxItems));
    bad.push([], ['nope'], 'start');
  }
  return { good, bad };
}

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1', async () => {
    const v = new Validator();
    const res = await v.validate(doc);
    expect(res.errors ?? [], JSON.stringify(res.errors)).toEqual([]);
    expect(res.valid).toBe(true);
    expect(v.version).toBe('3.1');
    expect(doc).toEqual(JSON.parse(JSON.stringify(buildOpenApi({ models: ['black-forest-labs/FLUX-1-schnell'] }))));
  });

  it('describes every route the server has, and marks exactly the public ones public', () => {
    const routes = server.app.printRoutes({ commonPrefix: false });
    const documented = Object.keys(doc.paths).map((p) => p.replace(/\{[^}]+\}/g, ':x'));
    for (const p of ['/v1/inference/black-forest-labs/FLUX-1-schnell', '/v1/inference/requests/:x', '/v1/inference/requests/:x/events', '/v1/openai/models', '/v1/openai/images/generations', '/v1/openai/images/edits', '/healthz', '/metrics', '/openapi.json', '/docs', '/']) {
      expect(documented).toContain(p);
    }
    expect(routes).toContain('images/edits');
    const pub = Object.entries(doc.paths as Schema).filter(([, ops]) => Object.values(ops as Schema).every((op: Schema) => Array.isArray(op.security) && op.security.length === 0)).map(([p]) => p);
    expect(pub.sort()).toEqual(['/', '/docs', '/healthz', '/metrics', '/openapi.json']);
  });

  it('allows exactly what the validator accepts, field by field (JSON and form bodies)', () => {
    const schema = doc.components.schemas.InferenceRequest as Schema;
    const fields = describeRequestFields();
    expect(Object.keys(schema.properties)).toEqual(fields.map((f) => f.name));
    expect(schema.required).toEqual(fields.filter((f) => f.required).map((f) => f.name));
    expect(schema.additionalProperties).toBe(false);
    expect(rejected({ prompt: 'x', colour: 'red' })).toEqual(['colour']); // unknown fields: refused, as documented
    expect(rejected({})).toEqual(['prompt']); // the required one
    let checked = 0;
    for (const f of fields) {
      const prop = schema.properties[f.name] as Schema;
      expect(prop.description, f.name).toBe(f.description);
      expect(prop['x-allowed'], f.name).toBe(f.allowed);
      if (f.name === 'image') continue; // content, not a range: its own tests are in validate.test.ts and server-api.test.ts
      const base = f.name === 'prompt' ? {} : { prompt: 'x' };
      const { good, bad } = probes(prop);
      for (const v of good) {
        expect(rejected({ ...base, [f.name]: v }), `${f.name} = ${JSON.stringify(v)} is allowed by the document`).toBeUndefined();
        checked++;
      }
      for (const v of bad) {
        expect(rejected({ ...base, [f.name]: v }), `${f.name} = ${JSON.stringify(v)} is outside the document`).toEqual([f.name]);
        checked++;
      }
      if (prop.default !== undefined) {
        const parsed = parseInferenceRequest({ prompt: 'x' }, { randomSeed: () => 1 }) as unknown as Record<string, unknown>;
        if (f.name !== 'webhook_events_filter') expect(parsed[f.name], `${f.name} default`).toEqual(prop.default);
      }
    }
    expect(checked).toBeGreaterThan(60);
    // form bodies: the same bounds, as strings
    const form = doc.components.schemas.InferenceRequestForm as Schema;
    expect(rejected({ prompt: 'x', width: String(form.properties.width.enum[0]) }, 'form')).toBeUndefined();
    expect(rejected({ prompt: 'x', width: String(form.properties.width.enum[0] + 1) }, 'form')).toEqual(['width']);
    expect(rejected({ prompt: 'x', webhook_events_filter: 'start,completed' }, 'form')).toBeUndefined();
    expect(form.properties.image.anyOf[0]).toEqual({ type: 'string', format: 'binary' });
  });

  it('lists every error code with its status; the server sends no code outside the table', () => {
    const codes = doc.components.schemas.ErrorDetail.properties.type.enum as string[];
    expect(codes).toEqual(Object.keys(ERROR_CODES));
    for (const c of codes) expect(c).toMatch(/^[a-z][a-z_]*$/); // one casing
    const src = join(ROOT, 'packages/server/src');
    const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const used = new Set<string>();
    for (const f of files) {
      const text = readFileSync(join(src, f), 'utf8');
      for (const m of text.matchAll(/(?:apiError|new ApiError|sendError\([^)]*?\d{3},)\s*\(?\s*'([a-z_]+)'/g)) used.add(m[1]!);
      for (const m of text.matchAll(/type: '([a-z_]+)', message/g)) used.add(m[1]!); // a JobError
      for (const m of text.matchAll(/super\('([a-z_]+)'/g)) used.add(m[1]!);
    }
    const notErrors = new Set(['running', 'object', 'string', 'http', 'array', 'integer', 'list', 'model', 'null', 'boolean', 'number', 'succeeded', 'queued', 'step', 'failed', 'webhook_secret', 'journal', 'server_config', 'fixed']);
    const missing = [...used].filter((c) => !notErrors.has(c) && !Object.hasOwn(ERROR_CODES, c));
    expect(missing).toEqual([]);
    expect(used.size).toBeGreaterThan(10);
  });
});

describe('the README', () => {
  it("has the field table's Parameters table, row for row", () => {
    expect(README).toContain(requestFieldsMarkdown());
  });
  it("has the error table (code, HTTP status, meaning)", () => {
    expect(README).toContain(errorCodesMarkdown());
  });
});
