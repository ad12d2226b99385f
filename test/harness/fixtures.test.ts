import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, fixturePath, loadFixture, toFixtureTensor } from './fixtures.ts';

describe('fixtures', () => {
  it('resolves paths relative to the repository root', () => {
    expect(existsSync(path.join(REPO_ROOT, 'pnpm-workspace.yaml'))).toBe(true);
    expect(fixturePath('nn', 'linear.safetensors')).toBe(path.join(REPO_ROOT, 'test', 'fixtures', 'nn', 'linear.safetensors'));
  });

  it('loads a safetensors fixture as float32 arrays with shapes', async () => {
    const f = await loadFixture('nn', 'linear.safetensors');
    expect(Object.keys(f).sort()).toEqual(['bias', 'weight', 'weight_nobias', 'x', 'y', 'y_nobias']);
    expect(f.weight.shape).toEqual([24, 16]);
    expect(f.weight.dtype).toBe('F32');
    expect(f.weight.data).toBeInstanceOf(Float32Array);
    expect(f.x.data.length).toBe(2 * 5 * 16);
  });

  it('names the script to run when a fixture is missing', async () => {
    await expect(loadFixture('nn', 'nope.safetensors')).rejects.toThrow(/test\/reference\/gen_nn\.py/);
  });

  it('turns int64 data into exact doubles and refuses values beyond 2^53', () => {
    const t = toFixtureTensor({ dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -2n, 49407n]) });
    expect(t.data).toBeInstanceOf(Float64Array);
    expect(Array.from(t.data)).toEqual([1, -2, 49407]);
    expect(() => toFixtureTensor({ dtype: 'U64', shape: [1], data: new BigUint64Array([2n ** 60n]) }, 'ids')).toThrow(/ids\[0\]/);
  });
});
