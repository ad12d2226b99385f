import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/weights/checkpoint.ts';
import { SafetensorsError, writeSafetensors } from '../../src/weights/safetensors.ts';

let root: string;

async function makeSharded(dir: string, index: unknown = undefined) {
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), {
    'a.weight': { dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
    'a.bias': { dtype: 'BF16', shape: [2], data: Float32Array.from([0.5, -1]) },
  });
  await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), {
    'b.weight': { dtype: 'F16', shape: [3], data: Float32Array.from([1, 2, 3]) },
    'b.step': { dtype: 'I64', shape: [1], data: BigInt64Array.from([42n]) },
    'unlisted': { dtype: 'U8', shape: [1], data: Uint8Array.from([9]) },
  }, { shard: '2' });
  const idx = index ?? {
    metadata: { total_size: 38 },
    weight_map: {
      'a.weight': 'model-00001-of-00002.safetensors',
      'a.bias': 'model-00001-of-00002.safetensors',
      'b.weight': 'model-00002-of-00002.safetensors',
      'b.step': 'model-00002-of-00002.safetensors',
    },
  };
  const p = join(dir, 'model.safetensors.index.json');
  await writeFile(p, typeof idx === 'string' ? idx : JSON.stringify(idx));
  return p;
}

async function expectError(p: Promise<unknown>, pattern: RegExp): Promise<SafetensorsError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected SafetensorsError matching ${pattern}`).toBeInstanceOf(SafetensorsError);
  expect((err as Error).message).toMatch(pattern);
  return err as SafetensorsError;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'flux-ckpt-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('sharded checkpoints', () => {
  it('merges the shards and routes each read to its shard', async () => {
    const dir = join(root, 'ok');
    const index = await makeSharded(dir);
    const ck = await openCheckpoint(index);
    try {
      expect([...ck.tensors.keys()].sort()).toEqual(['a.bias', 'a.weight', 'b.step', 'b.weight']);
      expect(ck.tensors.get('b.weight')).toMatchObject({ dtype: 'F16', shape: [3] });
      expect(ck.metadata).toEqual({ total_size: '38' });
      expect(ck.files.map((f) => f.slice(dir.length + 1))).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      expect(ck.fileOf('b.step')).toBe(join(dir, 'model-00002-of-00002.safetensors'));
      expect(Array.from(await ck.readFloat32('a.weight'))).toEqual([1, 2, 3, 4]);
      expect(Array.from(await ck.readFloat32('a.bias'))).toEqual([0.5, -1]);
      expect(Array.from(await ck.readFloat32('b.weight'))).toEqual([1, 2, 3]);
      expect(Array.from(await ck.read('b.step') as BigInt64Array)).toEqual([42n]);
      expect((await ck.readBytes('a.weight')).byteLength).toBe(16);
      // the weight map is authoritative: a tensor a shard holds but the map does not list is not exposed
      await expectError(ck.readFloat32('unlisted'), /model\.safetensors\.index\.json: tensor "unlisted": no tensor named "unlisted"/);
    } finally {
      await ck.close();
    }
  });

  it('a directory resolves to its index', async () => {
    const ck = await openCheckpoint(join(root, 'ok'));
    try {
      expect(ck.path.endsWith('model.safetensors.index.json')).toBe(true);
      expect(ck.tensors.size).toBe(4);
    } finally {
      await ck.close();
    }
  });

  it('a missing shard file is named', async () => {
    const dir = join(root, 'missing-shard');
    const index = await makeSharded(dir, {
      weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00003-of-00003.safetensors' },
    });
    const err = await expectError(openCheckpoint(index), /1 shard file\(s\) named in weight_map are missing from .*: "model-00003-of-00003\.safetensors"/);
    expect(err.code).toBe('SAFETENSORS_NOT_FOUND');
  });

  it('keys missing from their named shard are listed with the shard', async () => {
    const dir = join(root, 'missing-key');
    const index = await makeSharded(dir, {
      weight_map: {
        'a.weight': 'model-00001-of-00002.safetensors',
        'b.weight': 'model-00001-of-00002.safetensors', // really in shard 2
        'ghost': 'model-00002-of-00002.safetensors',
      },
    });
    await expectError(openCheckpoint(index), /1 key\(s\) not in model-00001-of-00002\.safetensors: "b\.weight"; 1 key\(s\) not in model-00002-of-00002\.safetensors: "ghost"/);
  });

  it('malformed indexes are SafetensorsErrors', async () => {
    const cases: [unknown, RegExp][] = [
      ['{not json', /index is not valid UTF-8 JSON/],
      [[1], /index must be a JSON object/],
      [{ metadata: {} }, /index has no "weight_map" object/],
      [{ weight_map: {} }, /weight_map is empty/],
      [{ weight_map: { a: 5 } }, /weight_map entry "a" must name a shard file, got 5/],
      [{ weight_map: { a: '../x.safetensors' } }, /shard files must be relative paths/],
      [{ weight_map: { a: '/etc/passwd' } }, /shard files must be relative paths/],
      [{ weight_map: { a: 'model-00001-of-00002.safetensors' }, metadata: 'x' }, /index "metadata" must be an object/],
    ];
    for (const [i, [idx, pattern]] of cases.entries()) {
      const index = await makeSharded(join(root, `bad-index-${i}`), idx);
      await expectError(openCheckpoint(index), pattern);
    }
  });

  it('a corrupt shard is reported with the shard path', async () => {
    const dir = join(root, 'corrupt-shard');
    const index = await makeSharded(dir);
    await writeFile(join(dir, 'model-00002-of-00002.safetensors'), 'garbage!garbage!');
    await expectError(openCheckpoint(index), /model-00002-of-00002\.safetensors: header length \d+ exceeds/);
  });
});

describe('single files and paths', () => {
  it('a single .safetensors file reads through the same interface', async () => {
    const dir = join(root, 'single');
    await makeSharded(dir);
    const ck = await openCheckpoint(join(dir, 'model-00001-of-00002.safetensors'));
    try {
      expect(ck.files).toEqual([join(dir, 'model-00001-of-00002.safetensors')]);
      expect(ck.fileOf('a.weight')).toBe(ck.path);
      expect(Array.from(await ck.readFloat32('a.bias'))).toEqual([0.5, -1]);
      await expectError(ck.readFloat32('nope'), /no tensor named "nope"/);
    } finally {
      await ck.close();
    }
  });

  it('a directory with exactly one .safetensors file and no index resolves to it', async () => {
    const dir = join(root, 'one-file');
    await mkdir(dir);
    await copyFile(join(root, 'single', 'model-00001-of-00002.safetensors'), join(dir, 'model.safetensors'));
    const ck = await openCheckpoint(dir);
    try {
      expect(ck.path).toBe(join(dir, 'model.safetensors'));
    } finally {
      await ck.close();
    }
  });

  it('ambiguous or empty directories and missing paths say what was expected', async () => {
    const dir = join(root, 'two-files');
    await mkdir(dir);
    await copyFile(join(root, 'single', 'model-00001-of-00002.safetensors'), join(dir, 'x.safetensors'));
    await copyFile(join(root, 'single', 'model-00001-of-00002.safetensors'), join(dir, 'y.safetensors'));
    await expectError(openCheckpoint(dir), /is a directory with 2 \.safetensors files \("x\.safetensors", "y\.safetensors"\); pass the checkpoint file or index to use/);
    const empty = join(root, 'empty');
    await mkdir(empty);
    await expectError(openCheckpoint(empty), /is a directory with no \.safetensors files/);
    await expectError(openCheckpoint(join(root, 'nope.safetensors')), /nope\.safetensors: not found; expected a \.safetensors file, a \*\.safetensors\.index\.json/);
  });
});
