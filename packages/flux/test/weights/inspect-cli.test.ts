/**
 * `pnpm flux inspect` end to end: the CLI entry point run as a child process (node --import tsx), as a user runs it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFlux } from '../../../../test/harness/run-cli.ts';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';
import { bflVaeArchitecture } from '../../src/weights/architectures.ts';
import { writeSparseSafetensors } from '../../src/weights/safetensors.ts';


const flux = (...args: string[]) => runFlux(args);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-inspect-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pnpm flux inspect', () => {
  it('malformed file: exit 1, one line on stderr naming the file, no stack trace', async () => {
    const bad = join(dir, 'broken.safetensors');
    // a header length far past the end of the file
    const bytes = Buffer.alloc(16);
    bytes.writeBigUInt64LE(1_000_000n, 0);
    await writeFile(bad, bytes);
    const r = await flux('inspect', bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: /);
    expect(lines[0]).toContain(bad);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--json prints one JSON object; the text form is a table', async () => {
    const ae = join(dir, 'ae.safetensors');
    const t = new Map(bflVaeArchitecture(FLUX_VAE).tensors);
    t.delete('decoder.conv_out.bias');
    await writeSparseSafetensors(ae, [...t].map(([name, shape]) => ({ name, dtype: 'F32' as const, shape })));
    const j = await flux('inspect', ae, '--json');
    expect(j.code).toBe(0);
    const report = JSON.parse(j.stdout);
    expect(report).toMatchObject({ format: 'bfl-vae', tensors: 243, parameters: 83_819_683 - 3, dtypes: { F32: 243 }, missing: ['decoder.conv_out.bias'], unexpected: [], mismatched: [] });
    const text = await flux('inspect', ae);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/format\s+bfl-vae/);
    expect(text.stdout).toMatch(/missing\s+1\n\s+decoder\.conv_out\.bias/);
  });

  it('usage errors exit 2', async () => {
    const r = await flux('inspect');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: inspect takes exactly one PATH/);
    expect((await flux('inspect', '--help')).code).toBe(0);
  });
});
