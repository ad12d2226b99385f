/**
 * The OpenAPI 3.1 document, generated from the zod schema that validates requests (`InferenceRequestSchema` and the
 * field table in packages/core/src/validate.ts) and from the error table (errors.ts): one source of truth, so the
 * document, the validator and the README's Parameters table cannot disagree (openapi.test.ts checks that they don't).
 */
import { describeRequestFields, type RequestFieldDoc } from '@flux-ts/core';
import { ERROR_CODES } from './errors.ts';
import { OPENAI_IGNORED } from './routes/openai.ts';
import { WEBHOOK_EVENTS } from './webhook.ts';

export type JsonSchema = Record<string, unknown>;
type ZodSchema = RequestFieldDoc['schema'];

/** One check of a zod 4 schema, as its definition records it (`_zod.def.checks[i]._zod.def`). */
interface ZodCheckDef {
  check: string;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
  maximum?: number;
  format?: string;
}

/**
 * A zod (v4) schema as JSON Schema (2020-12, as OpenAPI 3.1 uses), read from its definition (`_zod.def`). `mode:
 * 'json'` drops what JSON cannot carry (bytes); `mode: 'form'` describes a file part as binary. A refinement cannot
 * be read back out of zod: the field table's `enum` says what it allows.
 */
export function zodToJsonSchema(schema: ZodSchema, mode: 'json' | 'form', hint: { enum?: readonly (number | string)[] } = {}): JsonSchema {
  const def = (schema as unknown as { _zod: { def: Record<string, any> } })._zod.def;
  const checks = ((def.checks ?? []) as { _zod: { def: ZodCheckDef } }[]).map((c) => c._zod.def);
  switch (def.type as string) {
    case 'optional':
      return zodToJsonSchema(def.innerType, mode, hint);
    case 'nullable': {
      const inner = zodToJsonSchema(def.innerType, mode, hint);
      if (typeof inner.type === 'string') return { ...inner, type: [inner.type, 'null'] };
      return { anyOf: [...((inner.anyOf as JsonSchema[] | undefined) ?? [inner]), { type: 'null' }] };
    }
    case 'number': {
      const out: JsonSchema = { type: 'number' };
      for (const c of checks) {
        if (c.check === 'number_format' && /int/.test(c.format ?? '')) out.type = 'integer';
        else if (c.check === 'greater_than') out[c.inclusive ? 'minimum' : 'exclusiveMinimum'] = c.value;
        else if (c.check === 'less_than') out[c.inclusive ? 'maximum' : 'exclusiveMaximum'] = c.value;
      }
      if (hint.enum) {
        delete out.minimum;
        delete out.maximum;
        out.enum = [...hint.enum];
      }
      return out;
    }
    case 'string': {
      const out: JsonSchema = { type: 'string' };
      for (const c of checks) {
        if (c.check === 'min_length') out.minLength = c.minimum;
        else if (c.check === 'max_length') out.maxLength = c.maximum;
        else if (c.check === 'string_format' && c.format === 'url') out.format = 'uri';
      }
      if (hint.enum) out.enum = [...hint.enum];
      return out;
    }
    case 'boolean':
      return { type: 'boolean' };
    case 'enum':
      return { type: 'string', enum: Object.values(def.entries as Record<string, string>) };
    case 'array': {
      const out: JsonSchema = { type: 'array', items: zodToJsonSchema(def.element, mode) };
      for (const c of checks) {
        if (c.check === 'min_length') out.minItems = c.minimum;
        else if (c.check === 'max_length') out.maxItems = c.maximum;
      }
      return out;
    }
    case 'union': {
      const options = (def.options as ZodSchema[]).map((o) => zodToJsonSchema(o, mode)).filter((o) => Object.keys(o).length > 0);
      return options.length === 1 ? options[0]! : { anyOf: options };
    }
    case 'custom':
      // bytes (z.instanceof(Uint8Array)): a file part in a form, nothing JSON can carry
      return mode === 'form' ? { type: 'string', format: 'binary' } : {};
    default:
      throw new Error(`openapi: no JSON Schema for zod type ${String(def.type)}`);
  }
}

/** A table default ("25", "7.5", '["completed"]') as a value, when it is one (not "random" or "(none)"). */
function defaultValue(d: RequestFieldDoc): unknown {
  try {
    return JSON.parse(d.default);
  } catch {
    return undefined;
  }
}

/** The request body's JSON Schema, one property per field of the table. */
export function requestSchema(mode: 'json' | 'form'): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const f of describeRequestFields()) {
    let s = zodToJsonSchema(f.schema, mode, f.enum ? { enum: f.enum } : {});
    if (mode === 'form' && f.name === 'image') s = { anyOf: [{ type: 'string', format: 'binary' }, { type: 'string' }] };
    if (mode === 'form' && f.name === 'webhook_events_filter') s = { type: 'string', description: 'comma separated' };
    const value = defaultValue(f);
    properties[f.name] = { ...s, description: f.description, ...(value !== undefined ? { default: value } : {}), 'x-allowed': f.allowed };
    if (f.required) required.push(f.name);
  }
  return { type: 'object', properties, required, additionalProperties: false };
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonSchema) => ({ 'application/json': { schema } });

/** The error responses of a route, grouped by status, each listing the codes it can carry. */
function errorResponses(codes: (keyof typeof ERROR_CODES)[], schema = ref('Error')): Record<string, unknown> {
  const byStatus = new Map<number, string[]>();
  for (const c of codes) byStatus.set(ERROR_CODES[c].status, [...(byStatus.get(ERROR_CODES[c].status) ?? []), c]);
  const out: Record<string, unknown> = {};
  for (const [status, cs] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: cs.map((c) => `\`${c}\`: ${ERROR_CODES[c as keyof typeof ERROR_CODES].description}`).join(' '),
      content: json(status === 422 && cs.includes('invalid_request') ? ref('ValidationError') : schema),
    };
  }
  return out;
}

const COMMON_ERRORS: (keyof typeof ERROR_CODES)[] = ['bad_request', 'unauthorized', 'internal_error'];

export interface OpenApiOptions {
  /** Served model ids ("black-forest-labs/FLUX-1-schnell"). */
  models: readonly string[];
  version?: string;
}

export function buildOpenApi(opts: OpenApiOptions): JsonSchema {
  const pub = { security: [] };
  const idParam = { name: 'request_id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } };
  const inferencePaths: Record<string, unknown> = {};
  for (const model of opts.models) {
    inferencePaths[`/v1/inference/${model}`] = {
      post: {
        operationId: `infer_${model.split('/')[1]!.replace(/\W/g, '_')}`,
        summary: `Generate images with ${model} (DeepInfra's API)`,
        description:
          'Synchronous by default (the answer is the result; disconnecting cancels the job). With `Prefer: respond-async` or `?async=true` the answer is 202 at once and the job runs to completion; poll, stream or cancel it with the returned URLs. With a `webhook` the answer is 200 `queued` at once and the result is POSTed (Standard Webhooks signed).',
        tags: ['inference'],
        parameters: [
          { name: 'Prefer', in: 'header', schema: { type: 'string', example: 'respond-async' }, description: '`respond-async`: answer 202 at once (RFC 7240).' },
          { name: 'async', in: 'query', schema: { type: 'boolean' }, description: 'Same as `Prefer: respond-async`.' },
          { name: 'X-Request-Id', in: 'header', schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' }, description: "The job's id, chosen by the client (so it can follow or cancel a synchronous request from another connection); default a UUID." },
        ],
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: ref('InferenceRequest') },
            'multipart/form-data': { schema: ref('InferenceRequestForm') },
            'application/x-www-form-urlencoded': { schema: ref('InferenceRequestForm') },
          },
        },
        responses: {
          '200': { description: 'The result (synchronous), or `inference_status.status = "queued"` for a webhook request.', content: json(ref('InferenceResult')) },
          '202': { description: 'Accepted (asynchronous): poll `urls.get`, stream `urls.events`, DELETE `urls.cancel`.', content: json(ref('Accepted')), headers: { Location: { schema: { type: 'string' } } } },
          ...errorResponses([...COMMON_ERRORS, 'invalid_request_id', 'model_not_found', 'cancelled', 'duplicate_request_id', 'payload_too_large', 'invalid_request', 'webhook_refused', 'bad_png', 'bad_jpeg', 'unsupported_image', 'image_too_large', 'invalid_generate_options', 'queue_full', 'generator_crashed', 'worker_lost', 'interrupted', 'shutting_down']),
        },
        callbacks: {
          webhook: {
            '{$request.body#/webhook}': {
              post: {
                summary: 'The webhook: `completed` (the result, or the failure) and, when asked, `start`',
                description: `Standard Webhooks headers: \`webhook-id\` (the same on every retry: drop duplicates), \`webhook-timestamp\` (reject old ones: a replay), \`webhook-signature\` (\`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">\` with the server's secret); also \`X-Flux-Event\` (${WEBHOOK_EVENTS.join(' or ')}) and the older \`X-Flux-Signature: sha256=<hex HMAC of the body>\`. Retried until a 2xx.`,
                requestBody: { content: json({ anyOf: [ref('InferenceResult'), ref('WebhookFailure'), ref('WebhookStart')] }) },
                responses: { '200': { description: 'Received (any 2xx).' } },
              },
            },
          },
        },
      },
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'flux-ts',
      version: opts.version ?? '0.1.0',
      description: "FLUX.1 over HTTP: DeepInfra's inference API, job status/cancel/events, OpenAI-compatible images. Every route needs `Authorization: bearer <token>` when the server has tokens, except those marked public (an empty security list).",
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [{ name: 'inference' }, { name: 'jobs' }, { name: 'openai' }, { name: 'operations' }],
    paths: {
      ...inferencePaths,
      '/v1/inference/requests/{request_id}': {
        get: {
          operationId: 'getRequest',
          summary: 'A job: queued (position), running (step of total), succeeded (with the result), failed or cancelled',
          tags: ['jobs'],
          parameters: [idParam],
          responses: { '200': { description: 'The status', content: json(ref('JobStatus')) }, ...errorResponses([...COMMON_ERRORS, 'request_not_found']) },
        },
        delete: {
          operationId: 'cancelRequest',
          summary: 'Cancels a queued job, or stops a running one between steps',
          tags: ['jobs'],
          parameters: [idParam],
          responses: {
            '202': { description: '`cancelled`, or `cancelling` for a running job', content: json({ type: 'object', properties: { request_id: { type: 'string' }, status: { type: 'string', enum: ['cancelled', 'cancelling'] } } }) },
            ...errorResponses([...COMMON_ERRORS, 'request_not_found', 'not_cancellable']),
          },
        },
      },
      '/v1/inference/requests/{request_id}/events': {
        get: {
          operationId: 'requestEvents',
          summary: 'Server-sent events: status, queued, running, step (and preview, when the server makes previews), then succeeded | failed | cancelled',
          tags: ['jobs'],
          parameters: [idParam],
          responses: { '200': { description: 'An event stream; each `data:` is JSON', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errorResponses([...COMMON_ERRORS, 'request_not_found']) },
        },
      },
      '/v1/openai/models': {
        get: { operationId: 'openaiModels', summary: 'The served models (OpenAI shape)', tags: ['openai'], responses: { '200': { description: 'The models', content: json(ref('OpenAIModels')) }, '401': { description: 'unauthorized', content: json(ref('OpenAIError')) } } },
      },
      '/v1/openai/images/generations': {
        post: {
          operationId: 'openaiGenerate',
          summary: "OpenAI's images.generate; absent fields take the model's defaults (schnell: 4 steps)",
          tags: ['openai'],
          requestBody: { required: true, content: json(ref('OpenAIImagesRequest')) },
          responses: { '200': { description: 'The images', content: json(ref('OpenAIImagesResponse')) }, ...openaiErrors() },
        },
      },
      '/v1/openai/images/edits': {
        post: {
          operationId: 'openaiEdit',
          summary: "OpenAI's images.edit: image-to-image from an uploaded PNG or JPEG (no masks)",
          tags: ['openai'],
          requestBody: { required: true, content: { 'multipart/form-data': { schema: ref('OpenAIImagesEdit') } } },
          responses: { '200': { description: 'The images', content: json(ref('OpenAIImagesResponse')) }, ...openaiErrors() },
        },
      },
      '/healthz': { get: { operationId: 'healthz', summary: 'Liveness, models, queue depth, whether auth is on (public)', tags: ['operations'], ...pub, responses: { '200': { description: 'ok', content: json(ref('Health')) } } } },
      '/metrics': { get: { operationId: 'metrics', summary: 'Prometheus metrics (public)', tags: ['operations'], ...pub, responses: { '200': { description: 'text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/openapi.json': { get: { operationId: 'openapi', summary: 'This document (public)', tags: ['operations'], ...pub, responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } } },
      '/docs': { get: { operationId: 'docs', summary: 'Interactive documentation of this document (public page; its calls need the token)', tags: ['operations'], ...pub, responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
      '/': { get: { operationId: 'webPage', summary: 'The web page (public page; its calls need the token)', tags: ['operations'], ...pub, responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: '`--token T` or FLUX_API_TOKENS on the server' } },
      schemas: {
        InferenceRequest: requestSchema('json'),
        InferenceRequestForm: requestSchema('form'),
        InferenceStatus: {
          type: 'object',
          properties: { status: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] }, runtime_ms: { type: 'integer' }, cost: { type: 'number' }, tokens_generated: { type: 'integer' }, tokens_input: { type: 'integer' } },
        },
        InferenceResult: {
          type: 'object',
          properties: {
            images: { type: 'array', items: { type: 'string', description: 'data:image/png;base64,...' } },
            nsfw_content_detected: { type: 'array', items: { type: 'boolean' } },
            seed: { type: 'integer' },
            request_id: { type: 'string' },
            inference_status: ref('InferenceStatus'),
          },
          required: ['request_id', 'inference_status'],
        },
        Accepted: {
          type: 'object',
          properties: {
            request_id: { type: 'string' },
            status: { const: 'queued' },
            inference_status: ref('InferenceStatus'),
            urls: { type: 'object', properties: { get: { type: 'string', format: 'uri' }, cancel: { type: 'string', format: 'uri' }, events: { type: 'string', format: 'uri' } }, required: ['get', 'cancel', 'events'] },
          },
          required: ['request_id', 'status', 'urls'],
        },
        JobStatus: {
          type: 'object',
          properties: {
            request_id: { type: 'string' },
            model: { type: 'string' },
            status: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] },
            queue_position: { type: 'integer' },
            step: { type: 'integer' },
            total_steps: { type: 'integer' },
            created_at: { type: 'string', format: 'date-time' },
            started_at: { type: 'string', format: 'date-time' },
            finished_at: { type: 'string', format: 'date-time' },
            result: ref('InferenceResult'),
            error: ref('ErrorDetail'),
          },
          required: ['request_id', 'status'],
        },
        ErrorDetail: { type: 'object', properties: { type: { type: 'string', enum: Object.keys(ERROR_CODES) }, message: { type: 'string' } }, required: ['type', 'message'] },
        Error: {
          type: 'object',
          description: 'Every error: `detail` (FastAPI\'s field, a message) and `error.type`, one of the codes in the table (the HTTP status is fixed per code).',
          properties: { detail: { type: 'string' }, error: ref('ErrorDetail'), request_id: { type: 'string' } },
          required: ['detail', 'error'],
        },
        ValidationError: {
          type: 'object',
          properties: {
            detail: { type: 'array', items: { type: 'object', properties: { loc: { type: 'array', items: { type: 'string' } }, msg: { type: 'string' }, type: { type: 'string' }, input: { type: 'string' }, allowed: { type: 'string' } } } },
            error: { type: 'object', properties: { type: { const: 'invalid_request' }, message: { type: 'string' }, fields: { type: 'array', items: { type: 'object' } }, omitted: { type: 'integer' }, known_fields: { type: 'array', items: { type: 'string' } } } },
          },
        },
        WebhookFailure: { type: 'object', properties: { request_id: { type: 'string' }, inference_status: ref('InferenceStatus'), error: ref('ErrorDetail') } },
        WebhookStart: { type: 'object', properties: { request_id: { type: 'string' }, event: { const: 'start' }, inference_status: ref('InferenceStatus'), started_at: { type: 'string', format: 'date-time' } } },
        Health: { type: 'object', properties: { status: { const: 'ok' }, models: { type: 'array', items: { type: 'string' } }, queue_depth: { type: 'integer' }, running: { type: 'integer' }, auth: { type: 'boolean' } } },
        OpenAIModels: { type: 'object', properties: { object: { const: 'list' }, data: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, object: { const: 'model' }, created: { type: 'integer' }, owned_by: { type: 'string' } } } } } },
        OpenAIImagesRequest: openaiRequest('json'),
        OpenAIImagesEdit: openaiRequest('form'),
        OpenAIImagesResponse: {
          type: 'object',
          properties: { created: { type: 'integer' }, data: { type: 'array', items: { type: 'object', properties: { b64_json: { type: 'string' }, revised_prompt: { type: 'string', description: 'The prompt as given (nothing rewrites it).' } } } } },
        },
        OpenAIError: { type: 'object', properties: { error: { type: 'object', properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: ['string', 'null'] } } } } },
      },
    },
  };
}

function openaiErrors() {
  const e = json(ref('OpenAIError'));
  return {
    '400': { description: 'invalid_request_error: a bad field (the message names it and what is allowed)', content: e },
    '401': { description: 'invalid_request_error: missing or wrong token', content: e },
    '404': { description: 'invalid_request_error: the model is not served here', content: e },
    '409': { description: 'cancelled', content: e },
    '429': { description: 'rate_limit_exceeded: the queue is full (Retry-After)', content: e },
    '500': { description: 'server_error', content: e },
    '503': { description: 'server_error: shutting down', content: e },
  };
}

function openaiRequest(mode: 'json' | 'form'): JsonSchema {
  const fields = (requestSchema(mode).properties as Record<string, JsonSchema>);
  const ignored = Object.fromEntries(OPENAI_IGNORED.map((k) => [k, { description: 'Accepted and ignored (OpenAI field with no meaning here).' }]));
  return {
    type: 'object',
    properties: {
      prompt: fields.prompt,
      model: { type: 'string', description: 'A served model id or alias (FLUX.1-schnell, FLUX-1-schnell, black-forest-labs/FLUX-1-schnell); default the first served.' },
      n: { ...fields.num_images, description: 'Number of images (num_images).' },
      size: { type: 'string', pattern: '^\\d+x\\d+$', description: 'WIDTHxHEIGHT, each one of the allowed sizes; default 512x512.' },
      response_format: { const: 'b64_json' },
      seed: fields.seed,
      num_inference_steps: { ...fields.num_inference_steps, default: undefined, description: "Extension. Default: the model's own (schnell 4, dev 50)." },
      guidance_scale: { ...fields.guidance_scale, default: undefined, description: "Extension. Default: the model's own (3.5)." },
      ...(mode === 'form' ? { image: { type: 'string', format: 'binary', description: 'The input image (PNG or JPEG).' }, strength: fields.strength } : {}),
      ...ignored,
    },
    required: mode === 'form' ? ['prompt', 'image'] : ['prompt'],
  };
}
