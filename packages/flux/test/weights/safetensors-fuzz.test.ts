/**
 * Fuzz: seeded mutations of valid files must either parse (and then satisfy the format's invariants)
 * or be rejected with SafetensorsError: never another error type, a hang, or a giant allocation.
 * Most cases go through the in-memory `parseHeader`/`decodeSafetensors` (the same validation the file
 * reader uses); a slice of them also goes through real temp files and `SafetensorsFile`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '../../src/shared/random.ts';
import {
  DTYPES, DTYPE_SIZES, SafetensorsError, SafetensorsFile, decodeSafetensors, encodeSafetensors, parseHeader,
  type Dtype, type NamedTensor,
} from '../../src/weights/safetensors.ts';

const SEED = 0x5afe7e45;
const IN_MEMORY_CASES = 20_000;
const FILE_CASES = 500;
/** Hang guard per case (generous: a case normally takes well under a millisecond). */
const PER_CASE_LIMIT_MS = 2000;

type Rng = ReturnType<typeof mulberry32>;
const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];

function randomValidFile(r: Rng): Uint8Array {
  const tensors: Record<string, NamedTensor> = {};
  const count = int(r, 5);
  for (let i = 0; i < count; i++) {
    const dtype = pick(r, DTYPES);
    const shape = Array.from({ length: int(r, 4) }, () => int(r, 4));
    const n = shape.reduce((p, d) => p * d, 1);
    const data = new Uint8Array(n * DTYPE_SIZES[dtype]);
    for (let j = 0; j < data.length; j++) data[j] = int(r, 256);
    tensors[`t${i}.${pick(r, ['weight', 'bias', 'ü', ''])}`] = { dtype, shape, data };
  }
  return encodeSafetensors(tensors, r() < 0.5 ? { format: 'pt', k: String(int(r, 100)) } : undefined);
}

function setLength(bytes: Uint8Array, n: bigint): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return out;
}

function withHeader(bytes: Uint8Array, header: string, dataLength?: number): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const data = bytes.subarray(8 + n);
  const j = Buffer.from(header, 'utf8');
  const dl = dataLength ?? data.byteLength;
  const out = new Uint8Array(8 + j.byteLength + dl);
  new DataView(out.buffer).setBigUint64(0, BigInt(j.byteLength), true);
  out.set(j, 8);
  out.set(data.subarray(0, dl), 8 + j.byteLength);
  return out;
}

const WEIRD_NUMBERS: unknown[] = [
  -1, 0.5, 1e400, -0, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 2 ** 40, 4294967296, 1e21, '4', null, true, [], {}, NaN,
];
const WEIRD_DTYPES: unknown[] = ['F4', 'F8_E8M0', 'C64', 'f32', '', 'F32 ', 'BF16\u0000', 7, null, ['F32'], 'toString', '__proto__'];

/** Structured mutation of a parsed header, re-serialized with a correct length prefix. */
function mutateJson(r: Rng, bytes: Uint8Array): Uint8Array {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8')) as Record<string, any>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = names.length > 0 ? pick(r, names) : undefined;
  const t = name !== undefined ? header[name] : undefined;
  switch (int(r, 14)) {
    case 0: if (t) t.dtype = pick(r, [...DTYPES, ...WEIRD_DTYPES]); break;
    case 1: if (t) t.shape = [2 ** 40, 2 ** 40]; break;
    case 2: if (t) t.shape = Array.from({ length: int(r, 4) }, () => pick(r, [...WEIRD_NUMBERS, 0, 1, 2, 3])); break;
    case 3: if (t) t.data_offsets = [pick(r, WEIRD_NUMBERS), pick(r, WEIRD_NUMBERS)]; break;
    case 4: if (t) t.data_offsets = [t.data_offsets[0] + int(r, 9) - 4, t.data_offsets[1] + int(r, 9) - 4]; break;
    case 5: if (t) t.data_offsets = t.data_offsets.slice(0, int(r, 3)); break;
    case 6: if (names.length >= 2) { const other = header[pick(r, names)]; if (t) t.data_offsets = other.data_offsets.slice(); } break; // overlap
    case 7: if (name !== undefined) delete header[name]; break; // hole (or trailing data)
    case 8: header.__metadata__ = pick(r, [null, 5, 'x', [], { a: 1 }, { a: 'b' }, { a: null }]); break;
    case 9: if (name !== undefined) header[name] = pick(r, [null, 1, 'x', [], {}, { dtype: 'F32' }]); break;
    case 10: header[`new${int(r, 3)}`] = { dtype: pick(r, DTYPES), shape: [int(r, 3)], data_offsets: [int(r, 64), int(r, 64)] }; break;
    case 11: if (t) { t.shape = [int(r, 1 << 20), int(r, 1 << 20), int(r, 1 << 20)]; } break;
    case 12: if (t) t.data_offsets = [0, Number.MAX_SAFE_INTEGER]; break;
    default: if (t) { delete t[pick(r, ['dtype', 'shape', 'data_offsets'])]; } break;
  }
  let text = JSON.stringify(header);
  if (r() < 0.3) text = text.replace(/[\d]+/, () => pick(r, ['-1', '1.5', '1e309', '18446744073709551616', '00', '-0']));
  const extra = int(r, 3) === 0 ? int(r, 16) - 8 : 0; // sometimes change the data length too
  const dataLength = Math.max(0, bytes.byteLength - 8 - n + extra);
  const out = withHeader(bytes, text, Math.min(dataLength, bytes.byteLength - 8 - n));
  if (extra > 0) {
    const grown = new Uint8Array(out.byteLength + extra);
    grown.set(out);
    return grown;
  }
  return out;
}

function mutateBytes(r: Rng, bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength < 8) return bytes;
  // the (possibly already mutated) declared length, clamped to what is there
  const n = Math.min(Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)), bytes.byteLength - 8);
  switch (int(r, 9)) {
    case 0: { // flip random header bytes
      const out = bytes.slice();
      for (let k = 1 + int(r, 4); k > 0; k--) out[8 + int(r, n)] = int(r, 256);
      return out;
    }
    case 1: // truncate anywhere
      return bytes.slice(0, int(r, bytes.byteLength + 1));
    case 2: // giant or lying header length
      return setLength(bytes, pick(r, [2n ** 64n - 1n, 2n ** 63n, 100_000_001n, 100_000_000n, 2n ** 32n, BigInt(n + 1), BigInt(Math.max(0, n - 1)), 0n, 1n, BigInt(bytes.byteLength)]));
    case 3: { // delete a span of header text
      const a = 8 + int(r, n);
      const b = Math.min(8 + n, a + 1 + int(r, 8));
      const out = new Uint8Array(bytes.byteLength - (b - a));
      out.set(bytes.subarray(0, a));
      out.set(bytes.subarray(b), a);
      return setLength(out, BigInt(n - (b - a)));
    }
    case 4: { // insert JSON-significant characters into the header
      const ins = Buffer.from(pick(r, ['{', '}', '[', ']', '"', ',', ':', '\\', '\u00ff', '\ud800', '-', '9999999999999999999', ' ']), 'utf8');
      const at = 8 + int(r, n + 1);
      const out = new Uint8Array(bytes.byteLength + ins.byteLength);
      out.set(bytes.subarray(0, at));
      out.set(ins, at);
      out.set(bytes.subarray(at), at + ins.byteLength);
      return setLength(out, BigInt(n + ins.byteLength));
    }
    case 5: { // random garbage file
      const out = new Uint8Array(int(r, 64));
      for (let i = 0; i < out.length; i++) out[i] = int(r, 256);
      if (out.length >= 8 && r() < 0.5) new DataView(out.buffer).setBigUint64(0, BigInt(int(r, out.length)), true);
      return out;
    }
    case 6: { // append bytes
      const out = new Uint8Array(bytes.byteLength + 1 + int(r, 16));
      out.set(bytes);
      return out;
    }
    case 7: { // invalid UTF-8 byte sequences
      const out = bytes.slice();
      out[8 + int(r, n)] = pick(r, [0x80, 0xc0, 0xed, 0xf8, 0xff]);
      return out;
    }
    default:
      return bytes;
  }
}

function makeCase(r: Rng): Uint8Array {
  const base = randomValidFile(r);
  const kind = r();
  let out = kind < 0.5 ? mutateJson(r, base) : mutateBytes(r, base);
  if (r() < 0.15) out = mutateBytes(r, out); // sometimes stack two mutations
  return out;
}

/** If a case parses, the result must satisfy the format's invariants. */
function checkInvariants(bytes: Uint8Array, path: string) {
  const h = parseHeader(bytes, bytes.byteLength, path);
  let covered = 0;
  for (const t of h.tensors.values()) {
    expect(DTYPES).toContain(t.dtype);
    const n = t.shape.reduce((p, d) => p * d, 1);
    expect(t.dataOffsets[1] - t.dataOffsets[0]).toBe(n * DTYPE_SIZES[t.dtype as Dtype]);
    expect(t.dataOffsets[1]).toBeLessThanOrEqual(h.dataLength);
    covered += t.dataOffsets[1] - t.dataOffsets[0];
  }
  expect(covered).toBe(h.dataLength);
  expect(h.dataStart + h.dataLength).toBe(bytes.byteLength);
  const decoded = decodeSafetensors(bytes, path);
  for (const [name, t] of Object.entries(decoded.tensors)) {
    expect(t.data.length, name).toBe(t.shape.reduce((p, d) => p * d, 1));
  }
}

interface Tally { valid: number; rejected: number; slowestMs: number }

function runCase(bytes: Uint8Array, i: number, tally: Tally) {
  const path = `fuzz-case-${i}`;
  const t0 = performance.now();
  try {
    checkInvariants(bytes, path);
    tally.valid++;
  } catch (e) {
    if (!(e instanceof SafetensorsError)) {
      throw new Error(`case ${i} (${bytes.byteLength} bytes, head ${Buffer.from(bytes.subarray(0, 120)).toString('latin1')}) threw a non-SafetensorsError: ${String(e)}`);
    }
    expect(e.message.startsWith(`${path}: `)).toBe(true);
    tally.rejected++;
  }
  const ms = performance.now() - t0;
  tally.slowestMs = Math.max(tally.slowestMs, ms);
  expect(ms, `case ${i} took ${ms.toFixed(0)} ms`).toBeLessThan(PER_CASE_LIMIT_MS);
}

describe('safetensors fuzz', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flux-st-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`${IN_MEMORY_CASES} mutated in-memory files parse or throw SafetensorsError`, () => {
    const r = mulberry32(SEED);
    const tally: Tally = { valid: 0, rejected: 0, slowestMs: 0 };
    for (let i = 0; i < IN_MEMORY_CASES; i++) runCase(makeCase(r), i, tally);
    expect(tally.valid + tally.rejected).toBe(IN_MEMORY_CASES);
    // the mutations must exercise both outcomes substantially, or the fuzzer is not doing its job
    expect(tally.rejected).toBeGreaterThan(IN_MEMORY_CASES * 0.5);
    expect(tally.valid).toBeGreaterThan(IN_MEMORY_CASES * 0.05);
    console.log(`fuzz (memory): ${IN_MEMORY_CASES} cases, ${tally.valid} valid, ${tally.rejected} rejected, slowest ${tally.slowestMs.toFixed(1)} ms`);
  });

  it(`${FILE_CASES} mutated files on disk: open and read every tensor, or SafetensorsError`, async () => {
    const r = mulberry32(SEED ^ 0xf11e);
    let valid = 0;
    let rejected = 0;
    for (let i = 0; i < FILE_CASES; i++) {
      const bytes = makeCase(r);
      const p = join(dir, `case-${i}.safetensors`);
      await writeFile(p, bytes);
      try {
        const f = await SafetensorsFile.open(p);
        try {
          const mem = decodeSafetensors(bytes, p); // the file and memory paths must agree
          for (const name of f.tensors.keys()) {
            expect(Buffer.compare(Buffer.from(await f.readBytes(name)), Buffer.from(mem.tensors[name].bytes))).toBe(0);
            await f.readFloat32(name);
            await f.read(name);
          }
          expect(f.metadata).toEqual(mem.metadata);
        } finally {
          await f.close();
        }
        valid++;
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`file case ${i} threw a non-SafetensorsError: ${String(e)}`);
        expect(e.message.startsWith(p)).toBe(true);
        rejected++;
      }
      await rm(p);
    }
    expect(valid + rejected).toBe(FILE_CASES);
    expect(rejected).toBeGreaterThan(0);
    expect(valid).toBeGreaterThan(0);
    console.log(`fuzz (files): ${FILE_CASES} cases, ${valid} valid, ${rejected} rejected`);
  });
});

describe('differential: same verdict as the reference parser', () => {
  it('accepts exactly the mutated files Python safetensors.deserialize accepts', async () => {
    const path = fileURLToPath(new URL('../../../../test/fixtures/safetensors/differential.json', import.meta.url));
    const corpus = JSON.parse(await readFile(path, 'utf8')) as { cases: { b64: string; ok: boolean; names?: string[]; error?: string }[] };
    expect(corpus.cases.length).toBeGreaterThanOrEqual(500);
    const disagreements: string[] = [];
    let accepted = 0;
    for (const [i, c] of corpus.cases.entries()) {
      const bytes = new Uint8Array(Buffer.from(c.b64, 'base64'));
      let ours: string;
      try {
        const d = decodeSafetensors(bytes, `case-${i}`);
        ours = `ok ${JSON.stringify(Object.keys(d.tensors).sort())}`;
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw e;
        ours = `rejected: ${e.message}`;
      }
      const theirs = c.ok ? `ok ${JSON.stringify(c.names)}` : `rejected: ${c.error}`;
      if (c.ok) accepted++;
      if (ours.startsWith('ok') !== c.ok || (c.ok && ours !== theirs)) disagreements.push(`case ${i}: ours ${ours} | reference ${theirs}`);
    }
    expect(accepted).toBeGreaterThan(20);
    expect(disagreements, disagreements.slice(0, 5).join('\n')).toEqual([]);
  });
});
