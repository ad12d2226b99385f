import { describe, expect, it } from 'vitest';
import { FluxError } from '../src/errors.ts';
import {
  ALLOWED_SIZES,
  MODEL_DEFAULTS,
  PROMPT_MAX_CHARS,
  RANDOM_SEED_MAX,
  RANGES,
  SEED_API_DEFAULTS,
  requestDefaults,
} from '../src/options.ts';
import {
  InferenceRequestSchema,
  REQUEST_FIELDS,
  RequestValidationError,
  describeRequestFields,
  parseInferenceRequest,
  requestFieldsMarkdown,
  type FieldProblem,
  type ParseOptions,
} from '../src/validate.ts';

const P = { prompt: 'a cat' };
const fixedSeed: ParseOptions = { randomSeed: () => 42 };

function rejection(body: unknown, opts: ParseOptions = {}): RequestValidationError {
  try {
    parseInferenceRequest(body, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(RequestValidationError);
    expect(e).toBeInstanceOf(FluxError);
    expect((e as FluxError).code).toBe('invalid_request');
    return e as RequestValidationError;
  }
  throw new Error(`expected ${JSON.stringify(body)} to be rejected`);
}

function only(body: unknown, opts: ParseOptions = {}): FieldProblem {
  const e = rejection(body, opts);
  expect(e.fields, JSON.stringify(e.fields)).toHaveLength(1);
  return e.fields[0];
}

const SIZES_LIST = ALLOWED_SIZES.join(', ');

// [field, min, max, integer]
const NUMERIC: [keyof typeof RANGES, number, number, boolean][] = [
  ['num_inference_steps', 1, 512, true],
  ['guidance_scale', 1, 20, false],
  ['strength', 0, 1, false],
  ['num_images', 1, 4, true],
  ['seed', 0, Number.MAX_SAFE_INTEGER, true],
];

describe('options', () => {
  it('are frozen and hold the documented values', () => {
    for (const o of [SEED_API_DEFAULTS, MODEL_DEFAULTS, MODEL_DEFAULTS.schnell, MODEL_DEFAULTS.dev, ALLOWED_SIZES, RANGES, RANGES.seed]) {
      expect(Object.isFrozen(o)).toBe(true);
    }
    expect(SEED_API_DEFAULTS).toEqual({ num_inference_steps: 25, guidance_scale: 7.5, strength: 0.8, width: 512, height: 512, num_images: 1 });
    expect(ALLOWED_SIZES).toEqual([128, 256, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024]);
    expect(MODEL_DEFAULTS.schnell).toMatchObject({ num_inference_steps: 4, max_sequence_length: 256, guidance_embed: false });
    expect(MODEL_DEFAULTS.dev).toMatchObject({ num_inference_steps: 50, guidance_scale: 3.5, max_sequence_length: 512, guidance_embed: true });
    expect(requestDefaults('schnell')).toMatchObject({ num_inference_steps: 4, width: 512 });
    expect(requestDefaults('dev')).toMatchObject({ num_inference_steps: 50, guidance_scale: 3.5 });
  });
});

describe('parseInferenceRequest: defaults and seed', () => {
  it('fills the seed API defaults and draws a seed in 0..2^32-1', () => {
    const r = parseInferenceRequest({ prompt: 'a cat' });
    expect(r).toMatchObject({ prompt: 'a cat', num_inference_steps: 25, guidance_scale: 7.5, strength: 0.8, width: 512, height: 512, num_images: 1 });
    expect(Number.isInteger(r.seed) && r.seed >= 0 && r.seed <= RANDOM_SEED_MAX).toBe(true);
    expect(Object.keys(r).sort()).toEqual(['guidance_scale', 'height', 'num_images', 'num_inference_steps', 'prompt', 'seed', 'strength', 'width']);
    const seeds = new Set(Array.from({ length: 20 }, () => parseInferenceRequest(P).seed));
    expect(seeds.size).toBeGreaterThan(1);
  });

  it('uses randomSeed when no seed (or null) is given, and keeps a given seed', () => {
    expect(parseInferenceRequest(P, fixedSeed).seed).toBe(42);
    expect(parseInferenceRequest({ ...P, seed: null }, fixedSeed).seed).toBe(42);
    expect(parseInferenceRequest({ ...P, seed: 7 }, fixedSeed).seed).toBe(7);
  });

  it('model profiles change only the defaults, never given values', () => {
    expect(parseInferenceRequest(P, { defaults: 'schnell' }).num_inference_steps).toBe(4);
    expect(parseInferenceRequest(P, { defaults: 'dev' })).toMatchObject({ num_inference_steps: 50, guidance_scale: 3.5 });
    expect(parseInferenceRequest({ ...P, num_inference_steps: 9 }, { defaults: 'dev' }).num_inference_steps).toBe(9);
  });

  it('keeps the optional fields when given (and drops nulls)', () => {
    const r = parseInferenceRequest({ ...P, negative_prompt: 'blur', use_compel: false, image: 'aGVsbG8=', webhook: 'https://x.test/h' });
    expect(r).toMatchObject({ negative_prompt: 'blur', use_compel: false, image: 'aGVsbG8=', webhook: 'https://x.test/h' });
    const n = parseInferenceRequest({ ...P, negative_prompt: null, image: null, webhook: null });
    expect('negative_prompt' in n || 'image' in n || 'webhook' in n).toBe(false);
  });
});

describe('parseInferenceRequest: numeric fields, every boundary', () => {
  for (const [field, min, max, integer] of NUMERIC) {
    const range = new RegExp(`${min} to ${max}`);
    it(`${field}: min and max accepted`, () => {
      expect(parseInferenceRequest({ ...P, [field]: min })[field]).toBe(min);
      expect(parseInferenceRequest({ ...P, [field]: max })[field]).toBe(max);
      if (!integer) expect(parseInferenceRequest({ ...P, [field]: (min + max) / 2 })[field]).toBe((min + max) / 2);
    });
    const below = integer ? min - 1 : min - 0.01;
    const above = integer ? (field === 'seed' ? 2 ** 53 : max + 1) : max + 0.01;
    const bad: [string, unknown, RegExp][] = [
      ['min-1', below, new RegExp(`at least ${min}`)],
      ['max+1', above, integer && field === 'seed' ? /at most/ : new RegExp(`at most ${max}`)],
      ['NaN', Number.NaN, /finite number, not NaN/],
      ['Infinity', Number.POSITIVE_INFINITY, integer ? /integer/ : /finite/],
      ['-Infinity', Number.NEGATIVE_INFINITY, integer ? /integer/ : /finite/],
      ['a numeric string (JSON is strict)', String(min), integer ? /must be an integer/ : /must be a number/],
      ['a boolean', true, /must be/],
      ['an array', [min], /must be/],
      ['an object', { v: min }, /must be/],
    ];
    if (integer) bad.push(['non-integer', min + 0.5, /must be an integer/]);
    if (field !== 'seed') bad.push(['null', null, /must be/]);
    for (const [what, value, message] of bad) {
      it(`${field}: rejects ${what}`, () => {
        const p = only({ ...P, [field]: value }, fixedSeed);
        expect(p.field).toBe(field);
        expect(p.message).toMatch(message);
        expect(p.allowed).toMatch(range);
        expect(p.given).not.toBe('');
      });
    }
  }
  it('names what was given, NaN and Infinity included', () => {
    expect(only({ ...P, strength: Number.NaN }).given).toBe('NaN');
    expect(only({ ...P, guidance_scale: Number.POSITIVE_INFINITY }).given).toBe('Infinity');
    expect(only({ ...P, num_images: '2' }).given).toBe('"2"');
    expect(only({ ...P, num_images: 5 }).given).toBe('5');
  });
});

describe('parseInferenceRequest: width and height', () => {
  for (const field of ['width', 'height'] as const) {
    it(`${field}: every allowed size is accepted`, () => {
      for (const s of ALLOWED_SIZES) expect(parseInferenceRequest({ ...P, [field]: s })[field]).toBe(s);
    });
    for (const value of [500, 0, -512, 127, 1025, 1536, 2048, 512.5, Number.NaN, Number.POSITIVE_INFINITY, '512', null]) {
      it(`${field}: rejects ${String(value)} and lists the allowed sizes`, () => {
        const e = rejection({ ...P, [field]: value });
        expect(e.fields).toHaveLength(1);
        expect(e.fields[0].field).toBe(field);
        expect(e.fields[0].allowed).toBe(`one of ${SIZES_LIST}`);
        expect(e.message).toContain(SIZES_LIST);
      });
    }
  }
});

describe('parseInferenceRequest: strings, booleans, image, webhook', () => {
  const cases: [string, unknown, RegExp][] = [
    ['prompt', '', /not be empty or only whitespace/],
    ['prompt', ' \n\t ', /not be empty or only whitespace/],
    ['prompt', 'x'.repeat(PROMPT_MAX_CHARS + 1), /at most 10000 characters/],
    ['prompt', 5, /must be a string/],
    ['prompt', null, /must be a string/],
    ['prompt', ['a'], /must be a string/],
    ['negative_prompt', 3, /must be a string/],
    ['negative_prompt', 'x'.repeat(PROMPT_MAX_CHARS + 1), /at most 10000/],
    ['use_compel', 'true', /true or false/],
    ['use_compel', 1, /true or false/],
    ['use_compel', null, /true or false/],
    ['image', 'data:text/plain;base64,aGk=', /data URI/],
    ['image', 'not base64!!', /data URI .* or a base64 string/],
    ['image', 'data:image/png;base64,', /data URI/],
    ['image', '', /not be empty/],
    ['image', new Uint8Array(0), /not be empty/],
    ['image', 123, /string \(data URI or base64\) or bytes/],
    ['webhook', 'ftp://x.test/h', /http:\/\/ or https:\/\//],
    ['webhook', 'not a url', /absolute URL/],
    ['webhook', 42, /must be a string/],
  ];
  for (const [field, value, message] of cases) {
    it(`${field}: rejects ${JSON.stringify(value)?.slice(0, 30) ?? String(value)}`, () => {
      const p = only({ ...P, [field]: value });
      expect(p.field).toBe(field);
      expect(p.message).toMatch(message);
      expect(p.allowed.length).toBeGreaterThan(0);
    });
  }
  it('accepts prompts of exactly the maximum length and image data URIs, base64 and bytes', () => {
    expect(parseInferenceRequest({ prompt: 'y'.repeat(PROMPT_MAX_CHARS) }).prompt).toHaveLength(PROMPT_MAX_CHARS);
    expect(parseInferenceRequest({ prompt: ' keep spaces ' }).prompt).toBe(' keep spaces ');
    for (const image of ['data:image/png;base64,iVBORw0KGgo=', 'data:image/jpeg;base64,/9j/4AAQ', 'iVBORw0KGgo=', new Uint8Array([1, 2]), Buffer.from([3])]) {
      expect(parseInferenceRequest({ ...P, image }).image).toBe(image);
    }
    expect(parseInferenceRequest({ ...P, webhook: 'http://localhost:8080/done' }).webhook).toBe('http://localhost:8080/done');
  });
  it('a missing prompt is reported as required', () => {
    const p = only({});
    expect(p).toMatchObject({ field: 'prompt', given: 'nothing', message: 'is required' });
  });
  it('a long image string is summarised, not echoed', () => {
    const p = only({ ...P, image: `${'A'.repeat(5000)}!` });
    expect(p.given.length).toBeLessThan(120);
    expect(p.given).toMatch(/5001 characters/);
  });
});

describe('parseInferenceRequest: the one error names every bad field', () => {
  it('unknown fields are rejected by name, with the known fields listed once', () => {
    const e = rejection({ ...P, steps: 4, colour: 'red' });
    expect(e.fields[0]).toMatchObject({ field: 'steps', given: '4', message: 'is not a known field' });
    expect(e.knownFields).toContain('num_inference_steps');
    expect(e.message.split('num_inference_steps').length - 1).toBe(1);
  });

  it('lists at most 20 problems and counts the rest, however many unknown keys a body has', () => {
    const body: Record<string, unknown> = { ...P };
    for (let i = 0; i < 100_000; i++) body[`k${i}`] = i;
    const e = rejection(body);
    expect(e.fields).toHaveLength(20);
    expect(e.omitted).toBe(100_000 - 20);
    expect(e.message).toMatch(/^invalid request: 100000 fields rejected/);
    expect(e.message).toContain('... and 99980 more');
    expect(e.message.length).toBeLessThan(3000);
  });

  it('collects every problem at once, in field order, unknown fields last', () => {
    const e = rejection({ prompt: '', width: 500, height: 1000, num_inference_steps: 0, guidance_scale: Number.NaN, strength: 2, seed: -1, num_images: 1.5, colour: 'red', sampler: 'x' });
    expect(e.fields.map((f) => f.field)).toEqual([
      'prompt', 'num_inference_steps', 'guidance_scale', 'strength', 'width', 'height', 'seed', 'num_images', 'colour', 'sampler',
    ]);
    for (const f of e.fields) expect(e.message).toContain(`${f.field}: ${f.message}; got ${f.given}; allowed: ${f.allowed}`);
    expect(e.message).toMatch(/^invalid request: 10 fields rejected/);
    expect(e.message).toContain(`one of ${SIZES_LIST}`);
    expect(Object.isFrozen(e.fields)).toBe(true);
  });

  it('a value failing two rules gets both messages in one entry', () => {
    const p = only({ ...P, num_inference_steps: 600.5 });
    expect(p.message).toBe('must be at most 512; must be an integer');
  });

  for (const body of [null, undefined, 'prompt=a', 42, [P], new Uint8Array(3)]) {
    it(`rejects a body that is not an object: ${String(body)}`, () => {
      const p = only(body);
      expect(p.field).toBe('(body)');
      expect(p.allowed).toContain('prompt');
    });
  }
});

describe("parseInferenceRequest(body, { from: 'form' })", () => {
  const form: ParseOptions = { from: 'form', randomSeed: () => 1 };
  it('converts numeric strings and booleans', () => {
    const r = parseInferenceRequest(
      { prompt: 'a cat', num_inference_steps: '4', guidance_scale: '3.5', strength: ' 0.25 ', width: '768', height: ' 1.024e3 ', seed: '123', num_images: '2', use_compel: 'TRUE' },
      form,
    );
    expect(r).toMatchObject({ num_inference_steps: 4, guidance_scale: 3.5, strength: 0.25, width: 768, seed: 123, num_images: 2, use_compel: true, height: 1024 });
  });
  it('still checks ranges, sizes and integers after conversion, naming the string given', () => {
    const e = rejection({ prompt: 'a', height: '1e3', num_inference_steps: 'four', seed: '1.5', guidance_scale: 'NaN', use_compel: 'yes' }, form);
    expect(e.fields.map((f) => [f.field, f.given])).toEqual([
      ['num_inference_steps', '"four"'],
      ['guidance_scale', '"NaN"'],
      ['height', '1000'],
      ['seed', '1.5'],
      ['use_compel', '"yes"'],
    ]);
  });
  it('treats empty fields as absent (defaults apply), except the prompt', () => {
    const r = parseInferenceRequest({ prompt: 'a', num_inference_steps: '', seed: '', webhook: '', image: '' }, form);
    expect(r).toMatchObject({ num_inference_steps: 25, seed: 1 });
    expect('webhook' in r || 'image' in r).toBe(false);
    expect(only({ prompt: '' }, form).field).toBe('prompt');
  });
  it('JSON stays strict about the same strings', () => {
    expect(rejection({ prompt: 'a', num_inference_steps: '4', use_compel: 'true' }).fields.map((f) => f.field)).toEqual([
      'num_inference_steps',
      'use_compel',
    ]);
  });
  it('accepts file bytes for the image', () => {
    expect(parseInferenceRequest({ prompt: 'a', image: Buffer.from([1, 2, 3]) }, form).image).toEqual(Buffer.from([1, 2, 3]));
  });
});

describe('describeRequestFields', () => {
  it('has one row per schema field, in order, each fully described', () => {
    const docs = describeRequestFields();
    expect(docs.map((d) => d.name)).toEqual(Object.keys(InferenceRequestSchema.shape));
    expect(docs.map((d) => d.name)).toEqual([...REQUEST_FIELDS]);
    for (const d of docs) {
      for (const k of ['type', 'default', 'allowed', 'description'] as const) expect(d[k].length, `${d.name}.${k}`).toBeGreaterThan(0);
    }
    const by = Object.fromEntries(docs.map((d) => [d.name, d]));
    expect(by.width.allowed).toBe(`one of ${SIZES_LIST}`);
    expect(by.num_inference_steps.default).toBe('25');
    expect(by.guidance_scale.description).toMatch(/no effect on schnell/);
    expect(by.negative_prompt.description).toMatch(/no effect/);
    expect(by.use_compel.description).toMatch(/no effect/);
    expect(by.prompt.required).toBe(true);
  });
  it('renders a markdown table with every field', () => {
    const md = requestFieldsMarkdown();
    const lines = md.split('\n');
    expect(lines).toHaveLength(2 + REQUEST_FIELDS.length);
    for (const f of REQUEST_FIELDS) expect(md).toContain(`| \`${f}\` |`);
  });
});

describe('flux-ts extensions: preview_every, and any size when a server allows it', () => {
  it('preview_every: an integer 1 to 512, absent by default', () => {
    expect(parseInferenceRequest({ ...P, preview_every: 3 }).preview_every).toBe(3);
    expect(parseInferenceRequest(P).preview_every).toBeUndefined();
    expect(parseInferenceRequest({ ...P, preview_every: '2' }, { from: 'form' }).preview_every).toBe(2);
    for (const bad of [0, 1.5, 513, 'x']) expect(only({ ...P, preview_every: bad }).field).toBe('preview_every');
  });

  it("sizes 'any': multiples of 16 from 128 to 2048 pass; others name the rule; the default keeps the seed API's list", () => {
    const r = parseInferenceRequest({ ...P, width: 1344, height: 768 }, { sizes: 'any' });
    expect([r.width, r.height]).toEqual([1344, 768]);
    expect(only({ ...P, width: 1344 }).field).toBe('width');
    for (const bad of [1000, 112, 2064]) {
      const p = only({ ...P, width: bad }, { sizes: 'any' });
      expect(p).toMatchObject({ field: 'width', allowed: 'a multiple of 16 from 128 to 2048' });
    }
  });
});
