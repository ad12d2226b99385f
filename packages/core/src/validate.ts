/**
 * The public request (the DeepInfra FLUX-1-schnell request): one zod schema drives the server's validation,
 * the library's, and the README "Parameters" table (`describeRequestFields`).
 *
 * `parseInferenceRequest(body, { from })` checks everything at once and throws ONE `RequestValidationError`
 * naming every bad field, what was given and what is allowed. `from: 'json'` (default) is strict about types;
 * `from: 'form'` (multipart / urlencoded, where every value is a string) converts numeric strings to numbers,
 * "true"/"false" to booleans, and treats an empty field as absent.
 */
import { z } from 'zod';
import { FluxError } from './errors.ts';
import {
  ALLOWED_SIZES,
  IMAGE_SIDE,
  imageSideProblem,
  PROMPT_MAX_CHARS,
  RANDOM_SEED_MAX,
  RANGES,
  SEED_API_DEFAULTS,
  requestDefaults,
  type AllowedSize,
  type DefaultsProfile,
} from './options.ts';

/** One rejected field: its name, what was given (rendered), what is allowed, and what is wrong. */
export interface FieldProblem {
  field: string;
  given: string;
  allowed: string;
  message: string;
}

/** Problems listed in one error at most; the rest are counted ("... and K more"). */
export const MAX_LISTED_PROBLEMS = 20;

/**
 * Every bad field of a request, in one error. At most MAX_LISTED_PROBLEMS are listed (`fields`), the rest counted
 * (`omitted`), and when a field is unknown the known field names are given once (`knownFields`), so the error
 * stays small whatever the request (a body of 100,000 unknown keys gets a short answer, not a huge one).
 */
export class RequestValidationError extends FluxError {
  readonly fields: readonly FieldProblem[];
  /** Problems found but not listed in `fields`. */
  readonly omitted: number;
  /** The accepted field names, when a field was not one of them. */
  readonly knownFields?: readonly string[];
  constructor(problems: FieldProblem[], opts: { knownFields?: readonly string[] } = {}) {
    const listed = problems.slice(0, MAX_LISTED_PROBLEMS);
    const omitted = problems.length - listed.length;
    const lines = listed.map((f) => `  - ${f.field}: ${f.message}; got ${f.given}; allowed: ${f.allowed}`);
    if (omitted > 0) lines.push(`  ... and ${omitted} more`);
    if (opts.knownFields) lines.push(`known fields: ${opts.knownFields.join(', ')}`);
    const n = problems.length;
    super(
      'invalid_request',
      `invalid request: ${n} field${n === 1 ? '' : 's'} rejected (fix ${n === 1 ? 'it' : 'them'} and retry)\n${lines.join('\n')}`,
    );
    this.name = 'RequestValidationError';
    this.fields = Object.freeze(listed.map((f) => Object.freeze({ ...f })));
    this.omitted = omitted;
    if (opts.knownFields) this.knownFields = Object.freeze([...opts.knownFields]);
  }
}

/** The validated request with every default filled in and a seed always present. */
export interface InferenceRequest {
  prompt: string;
  num_inference_steps: number;
  guidance_scale: number;
  strength: number;
  width: AllowedSize;
  height: AllowedSize;
  /** The given seed, or one drawn uniformly from 0 .. 2^32-1 when the request had none. */
  seed: number;
  num_images: number;
  negative_prompt?: string;
  use_compel?: boolean;
  /** Input image for image-to-image: a data URI, a bare base64 string, or bytes; decoded by the pipeline. */
  image?: string | Uint8Array;
  webhook?: string;
  /** Which webhook events to send: `start` (the job began running), `completed` (default: only this). */
  webhook_events_filter?: WebhookEventName[];
  /** flux-ts extension: a `preview` event on the job's event stream after every N-th step. */
  preview_every?: number;
}

/** The webhook events a request can ask for. */
export const WEBHOOK_EVENT_NAMES = Object.freeze(['start', 'completed'] as const);
export type WebhookEventName = (typeof WEBHOOK_EVENT_NAMES)[number];

export interface ParseOptions {
  /** 'json' (default): strict types. 'form': strings from multipart / urlencoded bodies are converted. */
  from?: 'json' | 'form';
  /** Which defaults fill absent fields: 'api' (default, the seed API's) or a model's ('schnell' | 'dev'). */
  defaults?: DefaultsProfile;
  /** Source of a seed when none is given (default: crypto.getRandomValues, 0 .. 2^32-1). */
  randomSeed?: () => number;
  /**
   * 'api' (default): width and height from the seed API's list (ALLOWED_SIZES). 'any': any multiple of 16 from 128 to
   * 2048 (IMAGE_SIDE), as the library and the CLI take (a server started with --any-size).
   */
  sizes?: 'api' | 'any';
}

// ---------------------------------------------------------------------------------------------------------
// Field table: the single source of the schema, the messages and the docs.

type Coerce = 'number' | 'boolean' | 'string' | 'list';

interface FieldSpec {
  readonly type: string;
  readonly required: boolean;
  readonly default: string;
  readonly allowed: string;
  readonly description: string;
  readonly coerce: Coerce;
  readonly schema: z.ZodTypeAny;
  /** What a refinement allows, for the JSON Schema (a refinement itself cannot be read back out of zod). */
  readonly enum?: readonly (number | string)[];
}

const SIZES_TEXT = `one of ${ALLOWED_SIZES.join(', ')}`;

/** An integer in [min, max]. The range is checked first: zod 4 stops at a failed `.int()`, so 600.5 names both rules. */
function intField(min: number, max: number) {
  return z
    .number()
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` })
    .int({ message: 'must be an integer' });
}

/** A finite number in [min, max] (zod 4's number refuses Infinity and NaN itself). */
function numberField(min: number, max: number) {
  return z
    .number()
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` });
}

const sizeField = z
  .number()
  .int({ message: 'must be an integer' })
  .refine((v) => (ALLOWED_SIZES as readonly number[]).includes(v), { message: 'must be one of the allowed sizes' });

const DATA_URI = /^data:image\/[a-z0-9.+-]+(;[a-z0-9=.+-]+)*;base64,/i;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

const imageField = z.union(
  [
    z
      .string()
      .min(1, { message: 'must not be empty' })
      .refine(
        (s) => {
          const body = DATA_URI.test(s) ? s.slice(s.indexOf(',') + 1) : s.startsWith('data:') ? null : s;
          return body !== null && body.length > 0 && BASE64.test(body.replace(/\s+/g, ''));
        },
        { message: 'must be a data URI (data:image/...;base64,...) or a base64 string' },
      ),
    z.instanceof(Uint8Array).refine((b) => b.length > 0, { message: 'must not be empty' }),
  ],
  { error: 'must be a string (data URI or base64) or bytes' },
);

const webhookField = z
  .string()
  .url({ message: 'must be an absolute URL' })
  .refine((s) => /^https?:\/\//i.test(s), { message: 'must use http:// or https://' });

const FIELDS = {
  prompt: {
    type: 'string',
    required: true,
    default: '(required)',
    allowed: `non-empty text (not only whitespace), at most ${PROMPT_MAX_CHARS} characters`,
    description: 'Text describing the image to generate.',
    coerce: 'string',
    schema: z
      .string()
      .max(PROMPT_MAX_CHARS, { message: `must be at most ${PROMPT_MAX_CHARS} characters` })
      .refine((s) => s.trim().length > 0, { message: 'must not be empty or only whitespace' }),
  },
  num_inference_steps: {
    type: 'integer',
    required: false,
    default: String(SEED_API_DEFAULTS.num_inference_steps),
    allowed: `integer ${RANGES.num_inference_steps.min} to ${RANGES.num_inference_steps.max}`,
    description: 'Number of denoising steps (FLUX.1 schnell is distilled for 1 to 4 steps).',
    coerce: 'number',
    schema: intField(RANGES.num_inference_steps.min, RANGES.num_inference_steps.max).optional(),
  },
  guidance_scale: {
    type: 'number',
    required: false,
    default: String(SEED_API_DEFAULTS.guidance_scale),
    allowed: `number ${RANGES.guidance_scale.min} to ${RANGES.guidance_scale.max}`,
    description:
      'Accepted and validated, but FLUX.1 schnell has no guidance input: no effect on schnell. ' +
      'For FLUX.1 dev it is the distilled guidance value.',
    coerce: 'number',
    schema: numberField(RANGES.guidance_scale.min, RANGES.guidance_scale.max).optional(),
  },
  strength: {
    type: 'number',
    required: false,
    default: String(SEED_API_DEFAULTS.strength),
    allowed: `number ${RANGES.strength.min} to ${RANGES.strength.max}`,
    description:
      'Image-to-image only (ignored without `image`): how much of the input image is replaced. ' +
      '1 ignores the image; 0 returns it unchanged (0 steps run).',
    coerce: 'number',
    schema: numberField(RANGES.strength.min, RANGES.strength.max).optional(),
  },
  width: {
    type: 'integer',
    required: false,
    default: String(SEED_API_DEFAULTS.width),
    allowed: SIZES_TEXT,
    description: 'Image width in pixels.',
    coerce: 'number',
    schema: sizeField.optional(),
    enum: ALLOWED_SIZES,
  },
  height: {
    type: 'integer',
    required: false,
    default: String(SEED_API_DEFAULTS.height),
    allowed: SIZES_TEXT,
    description: 'Image height in pixels.',
    coerce: 'number',
    schema: sizeField.optional(),
    enum: ALLOWED_SIZES,
  },
  seed: {
    type: 'integer',
    required: false,
    default: 'random',
    allowed: `integer ${RANGES.seed.min} to ${RANGES.seed.max} (2^53-1), or null`,
    description:
      'Random seed; the same seed and parameters give the same image. When absent or null a seed in ' +
      `0 to ${RANDOM_SEED_MAX} (2^32-1) is drawn and returned.`,
    coerce: 'number',
    schema: intField(RANGES.seed.min, RANGES.seed.max).nullish(),
  },
  num_images: {
    type: 'integer',
    required: false,
    default: String(SEED_API_DEFAULTS.num_images),
    allowed: `integer ${RANGES.num_images.min} to ${RANGES.num_images.max}`,
    description: 'Number of images to generate from the prompt.',
    coerce: 'number',
    schema: intField(RANGES.num_images.min, RANGES.num_images.max).optional(),
  },
  negative_prompt: {
    type: 'string',
    required: false,
    default: '(none)',
    allowed: `text, at most ${PROMPT_MAX_CHARS} characters, or null`,
    description: 'Accepted for compatibility; no effect on FLUX.1 schnell.',
    coerce: 'string',
    schema: z.string().max(PROMPT_MAX_CHARS, { message: `must be at most ${PROMPT_MAX_CHARS} characters` }).nullish(),
  },
  use_compel: {
    type: 'boolean',
    required: false,
    default: '(none)',
    allowed: 'true or false',
    description: 'Accepted for compatibility; no effect on FLUX.1 schnell.',
    coerce: 'boolean',
    schema: z.boolean().optional(),
  },
  image: {
    type: 'string | bytes',
    required: false,
    default: '(none)',
    allowed: 'a data URI (data:image/png;base64,...), a base64 string, or file bytes; or null',
    description: 'Input image for image-to-image; decoded by the pipeline. Without it `strength` is unused.',
    coerce: 'string',
    schema: imageField.nullish(),
  },
  webhook: {
    type: 'string',
    required: false,
    default: '(none)',
    allowed: 'an http:// or https:// URL, or null',
    description: 'URL that receives the result when the inference finishes.',
    coerce: 'string',
    schema: webhookField.nullish(),
  },
  webhook_events_filter: {
    type: 'string[]',
    required: false,
    default: '["completed"]',
    allowed: `a list of ${WEBHOOK_EVENT_NAMES.join(', ')} (a form field: comma separated), or null`,
    description: 'Which webhook events to send: `start` when the job begins running, `completed` when it ends.',
    coerce: 'list',
    schema: z
      .array(z.enum(WEBHOOK_EVENT_NAMES, { error: `each entry must be one of ${WEBHOOK_EVENT_NAMES.join(', ')}` }))
      .min(1, { message: 'must name at least one event' })
      .max(WEBHOOK_EVENT_NAMES.length, { message: `must list at most ${WEBHOOK_EVENT_NAMES.length} events` })
      .nullish(),
  },
  preview_every: {
    type: 'integer',
    required: false,
    default: '(none)',
    allowed: `integer 1 to ${RANGES.num_inference_steps.max}, or null`,
    description:
      'flux-ts extension: the job\'s event stream (GET /v1/inference/requests/ID/events) sends a `preview` event after every ' +
      'N-th step: `{step, total_steps, image}` with a PNG data URI of a quick estimate of the final image (1/8 of its size).',
    coerce: 'number',
    schema: intField(1, RANGES.num_inference_steps.max).nullish(),
  },
} satisfies Record<string, FieldSpec>;

export type RequestField = keyof typeof FIELDS;
export const REQUEST_FIELDS = Object.freeze(Object.keys(FIELDS) as RequestField[]);

/** The strict zod schema of the request body (no defaults applied; unknown fields rejected). */
export const InferenceRequestSchema = z
  .object(Object.fromEntries(Object.entries(FIELDS).map(([k, f]) => [k, f.schema])) as {
    [K in RequestField]: (typeof FIELDS)[K]['schema'];
  })
  .strict();

const ANY_SIZE_TEXT = `a multiple of ${IMAGE_SIDE.multiple} from ${IMAGE_SIDE.min} to ${IMAGE_SIDE.max}`;
const anySideField = z
  .number()
  .int({ message: 'must be an integer' })
  .refine((v) => imageSideProblem(v) === null, { message: `must be ${ANY_SIZE_TEXT}` });

/** The request schema with width and height any multiple of 16 from 128 to 2048 (`sizes: 'any'`). */
const AnySizeSchema = InferenceRequestSchema.extend({ width: anySideField.optional(), height: anySideField.optional() });

export interface RequestFieldDoc {
  name: string;
  type: string;
  required: boolean;
  default: string;
  allowed: string;
  description: string;
  /** The zod schema of the field (the OpenAPI document is generated from it). */
  schema: z.ZodTypeAny;
  /** The values a refinement allows, when it allows a set (sizes). */
  enum?: readonly (number | string)[];
}

/** One row per request field, in schema order: the README "Parameters" table. */
export function describeRequestFields(): RequestFieldDoc[] {
  return REQUEST_FIELDS.map((name) => {
    const f: FieldSpec = FIELDS[name];
    return {
      name,
      type: f.type,
      required: f.required,
      default: f.default,
      allowed: f.allowed,
      description: f.description,
      schema: f.schema,
      ...(f.enum ? { enum: f.enum } : {}),
    };
  });
}

/** `describeRequestFields()` as a markdown table. */
export function requestFieldsMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const rows = describeRequestFields().map(
    (d) => `| \`${d.name}\` | ${esc(d.type)} | ${esc(d.default)} | ${esc(d.allowed)} | ${esc(d.description)} |`,
  );
  return ['| field | type | default | allowed | description |', '|---|---|---|---|---|', ...rows].join('\n');
}

// ---------------------------------------------------------------------------------------------------------

/** Renders a given value for an error message (short, never the whole image). */
export function describeGiven(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') {
    const s = JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
    return v.length > 60 ? `${s} (${v.length} characters)` : s;
  }
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'boolean' || typeof v === 'bigint') return `${String(v)} (${typeof v})`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function typeMessage(spec: FieldSpec, given: unknown): string {
  if (given === undefined) return 'is required';
  if (typeof given === 'number' && Number.isNaN(given)) return 'must be a finite number, not NaN';
  if (typeof given === 'number' && !Number.isFinite(given)) return spec.type === 'integer' ? 'must be a finite integer' : 'must be a finite number';
  switch (spec.type) {
    case 'integer':
      return 'must be an integer (a JSON number)';
    case 'number':
      return 'must be a number';
    case 'boolean':
      return 'must be true or false';
    case 'string[]':
      return 'must be a list of strings';
    default:
      return `must be a ${spec.type}`;
  }
}

const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Form bodies carry strings: numeric strings -> numbers, "true"/"false" -> booleans, "" -> absent. */
function coerceForm(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    const spec: FieldSpec | undefined = Object.hasOwn(FIELDS, k) ? FIELDS[k as RequestField] : undefined;
    if (spec === undefined || typeof v !== 'string') {
      out[k] = v;
      continue;
    }
    const s = v.trim();
    if (s === '' && !spec.required) continue; // an empty form field means "not given"
    if (spec.coerce === 'number') out[k] = NUMBER_TEXT.test(s) ? Number(s) : v;
    else if (spec.coerce === 'boolean') out[k] = /^true$/i.test(s) ? true : /^false$/i.test(s) ? false : v;
    else if (spec.coerce === 'list') out[k] = s.split(/[\s,]+/).filter(Boolean);
    else out[k] = v;
  }
  return out;
}

function drawSeed(): number {
  const a = new Uint32Array(1);
  globalThis.crypto.getRandomValues(a);
  return a[0];
}

/**
 * Validates a request body and returns it with defaults filled in and a seed always set.
 * Throws `RequestValidationError` (code 'invalid_request') listing every bad field.
 */
export function parseInferenceRequest(body: unknown, opts: ParseOptions = {}): InferenceRequest {
  const from = opts.from ?? 'json';
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) {
    throw new RequestValidationError([
      {
        field: '(body)',
        given: describeGiven(body),
        allowed: `an object with the fields ${REQUEST_FIELDS.join(', ')}`,
        message: 'the request body must be an object',
      },
    ]);
  }
  const input = from === 'form' ? coerceForm(body as Record<string, unknown>) : (body as Record<string, unknown>);
  const anySize = opts.sizes === 'any';
  const result = (anySize ? AnySizeSchema : InferenceRequestSchema).safeParse(input);
  if (!result.success) {
    const problems = problemsFrom(result.error, input).map((p) =>
      anySize && (p.field === 'width' || p.field === 'height') ? { ...p, allowed: ANY_SIZE_TEXT } : p,
    );
    const unknown = problems.some((p) => p.allowed === UNKNOWN_FIELD_ALLOWED);
    throw new RequestValidationError(problems, unknown ? { knownFields: REQUEST_FIELDS } : {});
  }

  const d = requestDefaults(opts.defaults ?? 'api');
  const v = result.data;
  const seed = v.seed ?? (opts.randomSeed ?? drawSeed)();
  const out: InferenceRequest = {
    prompt: v.prompt,
    num_inference_steps: v.num_inference_steps ?? d.num_inference_steps,
    guidance_scale: v.guidance_scale ?? d.guidance_scale,
    strength: v.strength ?? d.strength,
    width: (v.width ?? d.width) as AllowedSize,
    height: (v.height ?? d.height) as AllowedSize,
    seed,
    num_images: v.num_images ?? d.num_images,
  };
  if (v.negative_prompt != null) out.negative_prompt = v.negative_prompt;
  if (v.use_compel !== undefined) out.use_compel = v.use_compel;
  if (v.image != null) out.image = v.image;
  if (v.webhook != null) out.webhook = v.webhook;
  if (v.webhook_events_filter != null) out.webhook_events_filter = [...new Set(v.webhook_events_filter)];
  if (v.preview_every != null) out.preview_every = v.preview_every;
  return out;
}

/** What an unknown field is told is allowed (the names themselves are listed once, in the error). */
const UNKNOWN_FIELD_ALLOWED = 'a known field (see known fields)';

function problemsFrom(error: z.ZodError, input: Record<string, unknown>): FieldProblem[] {
  const byField = new Map<string, FieldProblem>();
  const add = (field: string, given: string, allowed: string, message: string) => {
    const p = byField.get(field);
    if (p === undefined) byField.set(field, { field, given, allowed, message });
    else if (!p.message.split('; ').includes(message)) p.message += `; ${message}`;
  };
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        add(key, describeGiven(input[key]), UNKNOWN_FIELD_ALLOWED, 'is not a known field');
      }
      continue;
    }
    const field = String(issue.path[0] ?? '(body)');
    const spec: FieldSpec | undefined = Object.hasOwn(FIELDS, field) ? FIELDS[field as RequestField] : undefined;
    const given = input[field];
    const allowed = spec?.allowed ?? '';
    // zod reports a non-integer number as invalid_type too: keep its message for numbers, NaN aside.
    const notInteger = issue.code === 'invalid_type' && issue.expected === 'int' && typeof given === 'number';
    const wrongType = issue.code === 'invalid_type' && !(notInteger && !Number.isNaN(given));
    const message = wrongType && spec ? typeMessage(spec, given) : issue.message;
    add(field, describeGiven(given), allowed, message);
  }
  // Report in schema order, unknown fields last.
  const order = (f: string) => {
    const i = (REQUEST_FIELDS as readonly string[]).indexOf(f);
    return i < 0 ? REQUEST_FIELDS.length : i;
  };
  return [...byField.values()].sort((a, b) => order(a.field) - order(b.field));
}
