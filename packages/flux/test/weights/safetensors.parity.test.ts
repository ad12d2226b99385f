import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FluxError } from '@flux-ts/core';
import {
  SafetensorsError, SafetensorsFile, decodeSafetensors, encodeSafetensors, loadSafetensors, parseHeader,
  writeSafetensors, writeSparseSafetensors, type Dtype, type NamedTensor,
} from '../../src/weights/safetensors.ts';

const FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/safetensors/', import.meta.url));

interface SpecTensor { dtype: Dtype; shape: number[]; hex: string; values: (number | string)[] }
interface Spec { metadata: Record<string, string>; tensors: Record<string, SpecTensor> }

let dir: string;
let spec: Spec;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-safetensors-'));
  spec = JSON.parse(await readFile(join(FIXTURES, 'python_written.json'), 'utf8'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const FLOATS = new Set(['F8_E5M2', 'F8_E4M3', 'F16', 'BF16', 'F32', 'F64']);

function specValue(v: number | string): number | bigint {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return typeof v === 'string' ? BigInt(v) : v;
}

function specTensors(s: Spec): Record<string, NamedTensor> {
  const out: Record<string, NamedTensor> = {};
  for (const [name, t] of Object.entries(s.tensors)) {
    out[name] = { dtype: t.dtype, shape: t.shape, data: Uint8Array.from(Buffer.from(t.hex, 'hex')) };
  }
  return out;
}

/** Element-wise equality with NaN == NaN and -0 != +0. */
function expectSameValues(actual: ArrayLike<number | bigint>, expected: (number | bigint)[], label: string) {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) expect(`${label}[${i}] = ${String(actual[i])}`).toBe(`${label}[${i}] = ${String(expected[i])}`);
  }
}

async function expectSafetensorsError(p: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<SafetensorsError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected a SafetensorsError matching ${pattern}`).toBeInstanceOf(SafetensorsError);
  expect(err).toBeInstanceOf(FluxError);
  expect((err as Error).message).toMatch(pattern);
  return err as SafetensorsError;
}

describe('reading the file written by Python safetensors', () => {
  it('header: metadata, names, dtypes, shapes', async () => {
    const f = await SafetensorsFile.open(join(FIXTURES, 'python_written.safetensors'));
    try {
      expect(f.metadata).toEqual(spec.metadata);
      expect([...f.tensors.keys()].sort()).toEqual(Object.keys(spec.tensors).sort());
      for (const [name, t] of Object.entries(spec.tensors)) {
        const info = f.tensors.get(name)!;
        expect(info.dtype, name).toBe(t.dtype);
        expect(info.shape, name).toEqual(t.shape);
        expect(info.name).toBe(name);
      }
      // every dtype the contract names is present in the fixture
      expect(new Set([...f.tensors.values()].map((t) => t.dtype)).size).toBe(15);
    } finally {
      await f.close();
    }
  });

  it('every tensor: raw bytes, float32 values and native values', async () => {
    const f = await SafetensorsFile.open(join(FIXTURES, 'python_written.safetensors'));
    try {
      for (const [name, t] of Object.entries(spec.tensors)) {
        const bytes = await f.readBytes(name);
        expect(Buffer.from(bytes).toString('hex'), name).toBe(t.hex);
        const expected = t.values.map(specValue);
        if (FLOATS.has(t.dtype)) {
          expectSameValues(await f.readFloat32(name), expected as number[], name);
        } else {
          const native = await f.read(name);
          expectSameValues(native as ArrayLike<number | bigint>, expected, name);
          expectSameValues(await f.readFloat32(name), expected.map((v) => Math.fround(Number(v))), `${name} as f32`);
        }
      }
      // native types
      expect(await f.read('i64')).toBeInstanceOf(BigInt64Array);
      expect(await f.read('u64')).toBeInstanceOf(BigUint64Array);
      expect(await f.read('f64')).toBeInstanceOf(Float64Array);
      expect(await f.read('bf16')).toBeInstanceOf(Float32Array);
      expect(await f.read('u16')).toBeInstanceOf(Uint16Array);
      expect(await f.read('bool')).toBeInstanceOf(Uint8Array);
    } finally {
      await f.close();
    }
  });

  it('loadSafetensors returns floats as Float32Array and integers natively', async () => {
    const all = await loadSafetensors(join(FIXTURES, 'python_written.safetensors'));
    expect(Object.keys(all).sort()).toEqual(Object.keys(spec.tensors).sort());
    for (const [name, t] of Object.entries(spec.tensors)) {
      expect(all[name].dtype).toBe(t.dtype);
      expect(all[name].shape).toEqual(t.shape);
      if (FLOATS.has(t.dtype)) expect(all[name].data, name).toBeInstanceOf(Float32Array);
      expectSameValues(all[name].data as ArrayLike<number | bigint>, t.values.map(specValue), name);
    }
    expect(all.scalar.shape).toEqual([]);
    expect(Array.from(all.scalar.data as Float32Array)).toEqual([7.25]);
    expect(all.empty.shape).toEqual([0, 3]);
    expect(all.empty.data.length).toBe(0);
  });
});

describe('writer', () => {
  it('encodes byte-identically to Python safetensors.torch.save_file', async () => {
    const py = new Uint8Array(await readFile(join(FIXTURES, 'python_written.safetensors')));
    const ts = encodeSafetensors(specTensors(spec), spec.metadata);
    expect(Buffer.compare(Buffer.from(ts), Buffer.from(py))).toBe(0);
  });

  it('matches the committed TS-written file that Python safetensors verified', async () => {
    const committed = await readFile(join(FIXTURES, 'ts_written.safetensors'));
    expect(Buffer.compare(Buffer.from(encodeSafetensors(specTensors(spec), spec.metadata)), committed)).toBe(0);
  });

  it('header JSON is padded with spaces to a multiple of 8 and tensors sorted as the reference does', () => {
    const bytes = encodeSafetensors({
      b: { dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) },
      a: { dtype: 'U8', shape: [1], data: Uint8Array.from([9]) },
      c: { dtype: 'F32', shape: [1], data: Float32Array.from([1]) },
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
    expect(text.trimEnd()).toBe('{"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},"b":{"dtype":"U8","shape":[3],"data_offsets":[5,8]}}');
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(Array.from(bytes.subarray(8 + n))).toEqual([0, 0, 128, 63, 9, 1, 2, 3]);
  });

  it('write -> read round trip through a file, every dtype, metadata, misaligned source views', async () => {
    const tensors = specTensors(spec);
    // a source view at an odd byte offset must be written correctly too
    const backing = new Uint8Array(1 + 24 * 4);
    backing.set(tensors.f32.data as Uint8Array, 1);
    tensors.f32 = { ...tensors.f32, data: backing.subarray(1) };
    const p = join(dir, 'roundtrip.safetensors');
    await writeSafetensors(p, tensors, { a: 'x', 'b c': 'ünï "q"' });
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.metadata).toEqual({ a: 'x', 'b c': 'ünï "q"' });
      for (const [name, t] of Object.entries(spec.tensors)) {
        expect(Buffer.from(await f.readBytes(name)).toString('hex'), name).toBe(t.hex);
        expect(f.tensors.get(name)!.shape).toEqual(t.shape);
      }
    } finally {
      await f.close();
    }
  });

  it('rejects inconsistent tensors with a SafetensorsError naming the tensor', async () => {
    await expectSafetensorsError(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }), /tensor "w": data is 12 bytes but dtype F32 with shape \[2, 2\] needs 16/);
    await expectSafetensorsError(() => encodeSafetensors({ w: { dtype: 'F12' as Dtype, shape: [1], data: new Uint8Array(1) } }), /tensor "w": unsupported dtype/);
    await expectSafetensorsError(() => encodeSafetensors({ w: { dtype: 'U8', shape: [-1], data: new Uint8Array(1) } }), /shape must be an array of non-negative integers/);
    await expectSafetensorsError(() => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }), /reserved/);
    await expectSafetensorsError(writeSafetensors(join(dir, 'bad.safetensors'), { w: { dtype: 'U8', shape: [2], data: new Uint8Array(1) } }), /bad\.safetensors: tensor "w"/);
    await expectSafetensorsError(writeSafetensors(join(dir, 'no-such-dir', 'x.safetensors'), {}), /cannot write \(ENOENT\)/);
  });

  it('F16/BF16 tensors may be given as float32 values (rounded to nearest even)', () => {
    const bytes = encodeSafetensors({
      h: { dtype: 'F16', shape: [3], data: Float32Array.from([1, 65520, 2 ** -25 + 2 ** -35]) },
      b: { dtype: 'BF16', shape: [2], data: Float32Array.from([1 + 2 ** -8, -3]) },
    });
    const d = decodeSafetensors(bytes).tensors;
    expect(Array.from(new Uint16Array(d.h.bytes.slice().buffer))).toEqual([0x3c00, 0x7c00, 0x0001]);
    expect(Array.from(new Uint16Array(d.b.bytes.slice().buffer))).toEqual([0x3f80, 0xc040]);
  });

  it('an empty file (no tensors) is valid', () => {
    const bytes = encodeSafetensors({});
    expect(decodeSafetensors(bytes)).toEqual({ metadata: {}, tensors: {} });
  });
});

/** A file from raw JSON text and data bytes (no padding unless given). */
function craft(json: string, data: Uint8Array = new Uint8Array(0), n?: bigint): Uint8Array {
  const j = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + j.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(j.byteLength), true);
  out.set(j, 8);
  out.set(data, 8 + j.byteLength);
  return out;
}

describe('validation: every malformed header is a SafetensorsError saying what is wrong', () => {
  const e = (dtype: string, shape: unknown, offs: unknown) => JSON.stringify({ dtype, shape, data_offsets: offs });
  const CASES: [string, Uint8Array, RegExp][] = [
    ['too small', new Uint8Array(5), /file is 5 bytes, too small/],
    ['header length over 100 MB', craft('{}', new Uint8Array(0), 100_000_001n), /header length 100000001 exceeds the 100000000-byte limit/],
    ['header length 2^64-1', craft('{}', new Uint8Array(0), 2n ** 64n - 1n), /exceeds the 100000000-byte limit/],
    ['header length past end of file', craft('{}', new Uint8Array(0), 1000n), /header length 1000 runs past the end of the 10-byte file/],
    ['invalid UTF-8', (() => { const b = craft('{"a":1}'); b[10] = 0xff; return b; })(), /not valid UTF-8/],
    ['not JSON', craft('{"a": '), /not valid JSON/],
    ['JSON array', craft('[1, 2]'), /must be a JSON object, got an array/],
    ['JSON null', craft('null'), /must be a JSON object, got null/],
    ['entry not an object', craft('{"w": 5}'), /tensor "w": header entry must be an object.*got the number 5/],
    ['unknown dtype', craft(`{"w": ${e('F4', [1], [0, 1])}}`, new Uint8Array(1)), /tensor "w": unsupported dtype the string "F4"; supported: BOOL, U8/],
    ['dtype not a string', craft(`{"w": ${e(7 as unknown as string, [1], [0, 1])}}`, new Uint8Array(1)), /unsupported dtype the number 7/],
    ['negative dimension', craft(`{"w": ${e('U8', [-1], [0, 1])}}`, new Uint8Array(1)), /header contains the number -1; shapes and data_offsets must be non-negative integers/],
    ['fractional dimension', craft(`{"w": ${e('U8', [1.5], [0, 1])}}`, new Uint8Array(1)), /header contains the number 1\.5;/],
    ['exponent literal', craft(`{"w": ${e('U8', [1], [0, 1])}}`.replace('[1]', '[1e0]'), new Uint8Array(1)), /header contains the number 1e0;/],
    ['negative zero literal', craft(`{"w": ${e('U8', [0], [0, 0])}}`.replace('[0]', '[-0]')), /header contains the number -0;/],
    ['duplicate tensor name', craft(`{"w": ${e('U8', [1], [0, 1])}, "w": ${e('U8', [1], [0, 1])}}`, new Uint8Array(1)), /header has the key "w" more than once/],
    ['duplicate name spelled with an escape', craft(`{"w": ${e('U8', [1], [0, 1])}, "\\u0077": ${e('U8', [1], [0, 1])}}`, new Uint8Array(1)), /header has the key "w" more than once/],
    ['deeply nested JSON', craft('{"a":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}'), /nests JSON more than 64 levels deep/],
    ['duplicate __metadata__', craft('{"__metadata__": {}, "__metadata__": {"a": "b"}}'), /header has the key "__metadata__" more than once/],
    ['string dimension (negative)', craft(`{"w": ${e('U8', ['-1'], [0, 0])}}`), /not a non-negative integer: the string "-1"/],
    ['string dimension', craft(`{"w": ${e('U8', ['2'], [0, 2])}}`, new Uint8Array(2)), /not a non-negative integer: the string "2"/],
    ['shape not an array', craft(`{"w": ${e('U8', 3, [0, 3])}}`, new Uint8Array(3)), /shape must be an array/],
    ['giant shape [2^40, 2^40]', craft(`{"w": ${e('F32', [2 ** 40, 2 ** 40], [0, 4])}}`, new Uint8Array(4)), /more elements than can be addressed/],
    ['dimension 2^64', craft('{"w": {"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}}', new Uint8Array(1)), /not a non-negative integer/],
    ['size mismatch', craft(`{"w": ${e('F32', [2], [0, 4])}}`, new Uint8Array(4)), /tensor "w": dtype F32 with shape \[2\] needs 8 bytes but data_offsets \[0, 4\] hold 4/],
    ['offsets reversed', craft(`{"w": ${e('U8', [0], [4, 0])}}`, new Uint8Array(4)), /data_offsets \[4, 0\] end before they begin/],
    ['negative offset', craft(`{"w": ${e('U8', [1], [-1, 0])}}`, new Uint8Array(1)), /header contains the number -1;/],
    ['offset not a number', craft(`{"w": ${e('U8', [1], ['0', 1])}}`, new Uint8Array(1)), /data_offsets must be \[begin, end\] with non-negative integers/],
    ['float offset', craft(`{"w": ${e('U8', [1], [0.5, 1.5])}}`, new Uint8Array(1)), /header contains the number 0\.5;/],
    ['three offsets', craft(`{"w": ${e('U8', [1], [0, 1, 2])}}`, new Uint8Array(1)), /data_offsets must be/],
    ['offsets past the data', craft(`{"w": ${e('U8', [8], [0, 8])}}`, new Uint8Array(4)), /tensor "w": data_offsets \[0, 8\] run past the end of the 4-byte data region/],
    ['overlap', craft(`{"a": ${e('U8', [4], [0, 4])}, "b": ${e('U8', [4], [2, 6])}}`, new Uint8Array(6)), /tensor "b": data_offsets \[2, 6\] overlap the previous tensor, which ends at 4/],
    ['hole', craft(`{"a": ${e('U8', [2], [0, 2])}, "b": ${e('U8', [2], [4, 6])}}`, new Uint8Array(6)), /tensor "b": data_offsets \[4, 6\] leave a hole: bytes \[2, 4\)/],
    ['trailing bytes after the data', craft(`{"a": ${e('U8', [2], [0, 2])}}`, new Uint8Array(5)), /tensors cover 2 bytes of data but the file has 5/],
    ['metadata not an object', craft('{"__metadata__": [1]}'), /__metadata__ must be an object of strings, got an array/],
    ['metadata value not a string', craft('{"__metadata__": {"k": 1}}'), /__metadata__ value for "k" must be a string, got the number 1/],
  ];
  for (const [label, bytes, pattern] of CASES) {
    it(label, async () => {
      const err = await expectSafetensorsError(() => parseHeader(bytes, bytes.byteLength, '/x/bad.safetensors'), pattern);
      expect(err.message.startsWith('/x/bad.safetensors: ')).toBe(true);
      expect(err.path).toBe('/x/bad.safetensors');
    });
  }

  it('the same checks run when opening a file, and the error names the file', async () => {
    const p = join(dir, 'hole.safetensors');
    await writeFile(p, CASES.find(([l]) => l === 'hole')![1]);
    const err = await expectSafetensorsError(SafetensorsFile.open(p), /hole\.safetensors: tensor "b": .*leave a hole/);
    expect(err.tensor).toBe('b');
  });

  it('accepts what the reference accepts: leading whitespace, null metadata, unknown fields, zero-size tensors', () => {
    const ok = craft(` {"__metadata__": null, "z": {"dtype":"F32","shape":[0,5],"data_offsets":[0,0],"extra":1}, "w": {"dtype":"U8","shape":[2],"data_offsets":[0,2]}}  `, Uint8Array.from([7, 8]));
    const h = parseHeader(ok, ok.byteLength, 'ok');
    expect(h.metadata).toEqual({});
    expect(h.tensors.get('z')!.shape).toEqual([0, 5]);
    expect(h.dataLength).toBe(2);
    // numbers inside strings are not number literals
    const str = craft('{"__metadata__": {"x": "-1.5e3, [0, 1]"}}');
    expect(parseHeader(str, str.byteLength, 's').metadata).toEqual({ x: '-1.5e3, [0, 1]' });
    expect(Array.from(decodeSafetensors(ok).tensors.w.data as Uint8Array)).toEqual([7, 8]);
  });

  it('a tensor named __proto__ is just a name', () => {
    const ok = craft('{"__proto__": {"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', Uint8Array.from([3]));
    expect([...parseHeader(ok, ok.byteLength, 'p').tensors.keys()]).toEqual(['__proto__']);
  });
});

describe('file errors', () => {
  it('missing file and directory say which path and what was expected', async () => {
    await expectSafetensorsError(SafetensorsFile.open(join(dir, 'nope.safetensors')), /nope\.safetensors: file not found; expected a \.safetensors file/);
    const d = join(dir, 'a-directory');
    await mkdir(d);
    const err = await expectSafetensorsError(SafetensorsFile.open(d), /a-directory: is a directory; expected a \.safetensors file/);
    expect(err.code).toBe('SAFETENSORS_NOT_FOUND');
    await expectSafetensorsError(loadSafetensors(join(dir, 'nope.safetensors')), /file not found/);
  });

  it('unknown tensor name lists the closest names', async () => {
    const p = join(dir, 'names.safetensors');
    await writeSafetensors(p, {
      'blocks.0.attn.weight': { dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      'blocks.0.attn.bias': { dtype: 'U8', shape: [1], data: new Uint8Array(1) },
      'other': { dtype: 'U8', shape: [1], data: new Uint8Array(1) },
    });
    const f = await SafetensorsFile.open(p);
    try {
      const err = await expectSafetensorsError(f.readFloat32('blocks.0.attn.weigth'), /tensor "blocks\.0\.attn\.weigth": no tensor named "blocks\.0\.attn\.weigth" \(it holds 3 tensors; closest names: "blocks\.0\.attn\.weight"/);
      expect(err.code).toBe('SAFETENSORS_UNKNOWN_TENSOR');
      await expectSafetensorsError(f.read('x'), /no tensor named "x"/);
      await expectSafetensorsError(f.readBytes('x'), /no tensor named "x"/);
    } finally {
      await f.close();
    }
    await expectSafetensorsError(f.readBytes('other'), /file is closed/);
  });

  it('a file truncated after opening is reported, not returned short', async () => {
    const p = join(dir, 'shrinks.safetensors');
    await writeSafetensors(p, { w: { dtype: 'F32', shape: [1000], data: new Float32Array(1000) } });
    const f = await SafetensorsFile.open(p);
    try {
      const size = (await stat(p)).size;
      await writeFile(p, (await readFile(p)).subarray(0, size - 100));
      await expectSafetensorsError(f.readBytes('w'), /file ended while reading tensor "w"/);
    } finally {
      await f.close();
    }
    await expectSafetensorsError(SafetensorsFile.open(p), /run past the end of the 3900-byte data region/);
  });

  it('reads tensors whose data offset is not aligned (header length not a multiple of 8)', async () => {
    // 8 + 61 = 69: the F32 data starts at an odd file offset
    const json = '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}';
    const padded = json + ' '.repeat(61 - json.length);
    const bytes = craft(padded, new Uint8Array(new Float32Array([1.5, -2, 3]).buffer));
    const p = join(dir, 'odd.safetensors');
    await writeFile(p, bytes);
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.dataStart).toBe(69);
      expect(Array.from(await f.readFloat32('w'))).toEqual([1.5, -2, 3]);
    } finally {
      await f.close();
    }
    expect(Array.from(decodeSafetensors(bytes).tensors.w.data as Float32Array)).toEqual([1.5, -2, 3]); // misaligned in memory
  });
});

describe('sparse header-only files', () => {
  it('a >4 GB sparse file: offsets beyond 2^32 parse and read (zeros), almost no disk used', async () => {
    const p = join(dir, 'big.safetensors');
    const entries = [
      { name: 'huge', dtype: 'BF16' as Dtype, shape: [3, 2 ** 30] }, // 6 GiB
      { name: 'tail', dtype: 'BF16' as Dtype, shape: [4, 2] }, // sorted after "huge": offset 6 GiB
      { name: 'first', dtype: 'F32' as Dtype, shape: [5] }, // F32 sorts before BF16
    ];
    const total = await writeSparseSafetensors(p, entries, { format: 'pt' });
    const s = await stat(p);
    expect(s.size).toBe(total);
    expect(total).toBeGreaterThan(2 ** 32);
    expect(s.blocks * 512).toBeLessThan(1 << 20); // sparse: header only on disk
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.tensors.get('first')!.dataOffsets).toEqual([0, 20]);
      expect(f.tensors.get('huge')!.dataOffsets).toEqual([20, 20 + 6 * 2 ** 30]);
      const tail = f.tensors.get('tail')!;
      expect(tail.dataOffsets).toEqual([20 + 6 * 2 ** 30, 20 + 6 * 2 ** 30 + 16]);
      expect(f.dataStart + tail.dataOffsets[1]).toBe(total);
      expect(Array.from(await f.readFloat32('tail'))).toEqual(new Array(8).fill(0));
      expect(Array.from(await f.readFloat32('first'))).toEqual([0, 0, 0, 0, 0]);
    } finally {
      await f.close();
    }
    await rm(p);
  });

  it('the header of a sparse file equals the header encodeSafetensors writes for the same tensors', async () => {
    const p = join(dir, 'small-sparse.safetensors');
    const tensors: Record<string, NamedTensor> = {
      a: { dtype: 'F16', shape: [2, 3], data: new Uint16Array(6) },
      b: { dtype: 'I64', shape: [1], data: new BigInt64Array(1) },
    };
    await writeSparseSafetensors(p, Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })));
    expect(Buffer.compare(await readFile(p), Buffer.from(encodeSafetensors(tensors)))).toBe(0);
  });
});
