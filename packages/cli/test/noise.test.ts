import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runFlux } from '../../../test/harness/run-cli.ts';
import { loadSafetensors, SafetensorsFile } from '../../flux/src/weights/safetensors.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/noise/noise.safetensors');
const dir = mkdtempSync(join(tmpdir(), 'flux-noise-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flux = (...args: string[]) => runFlux(['noise', ...args]);

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ia = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ib = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ia.every((v, i) => v === ib[i]);
}

describe('pnpm flux noise', () => {
  it('writes torch.randn([1,16,64,64], seed 42) bit for bit, with metadata', async () => {
    const out = join(dir, 'noise.safetensors');
    const r = await flux('--shape', '1,16,64,64', '--seed', '42', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const file = await SafetensorsFile.open(out);
    expect(file.metadata).toMatchObject({ seed: '42', shape: '[1,16,64,64]', generator: 'torch.Generator(cpu).manual_seed', kernel: 'avx2', dtype: 'float32' });
    expect(file.tensors.get('noise')).toMatchObject({ dtype: 'F32', shape: [1, 16, 64, 64] });
    const actual = await file.readFloat32('noise');
    await file.close();
    const expected = (await loadSafetensors(FIXTURE))['avx2/flux_1x16x64x64_s42/0']!.data as Float32Array;
    expect(sameBits(actual, expected)).toBe(true);
  });

  it('writes bfloat16 noise as BF16 equal to torch.randn(..., dtype=torch.bfloat16)', async () => {
    const out = join(dir, 'bf16.safetensors');
    expect((await flux('--shape', '40', '--seed', '1', '--dtype', 'bfloat16', '--out', out)).code).toBe(0);
    const got = (await loadSafetensors(out)).noise!;
    expect(got.dtype).toBe('BF16');
    const expected = (await loadSafetensors(FIXTURE))['avx2/bf16_tail_seq_s1/0']!.data as Float32Array;
    expect(sameBits(got.data as Float32Array, expected)).toBe(true);
  });

  it('rejects a bad seed or shape with a clear message (usage errors exit 2)', async () => {
    const bad = await flux('--shape', '1,16,64,64', '--seed', '18446744073709551616', '--out', join(dir, 'x.safetensors'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: --seed: seed 18446744073709551616 is out of range: .* -9223372036854775808 to 18446744073709551615/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const shape = await flux('--shape', '1,16,sixty', '--seed', '1', '--out', join(dir, 'x.safetensors'));
    expect(shape.code).toBe(1);
    expect(shape.stderr).toMatch(/^error: shape "1,16,sixty" is invalid/);
    const missing = await flux('--seed', '1');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^error: --shape is required/);
  });
});
