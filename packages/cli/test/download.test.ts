/**
 * `pnpm flux download` end to end: the CLI run as a child process (tsx) against the fake hub on 127.0.0.1,
 * with HF_ENDPOINT pointing at it and HF_HUB_CACHE at a temp folder. The child is spawned asynchronously:
 * the fake hub lives in this process and must keep answering.
 */
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFlux, type CliResult } from '../../../test/harness/run-cli.ts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeHub, fakeFluxRepo, sha256 } from '../../../test/harness/fake-hub.ts';

const REPO = 'black-forest-labs/FLUX.1-schnell';
let hub: FakeHub;
let tmp: string;

function flux(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runFlux(['download', ...args], {
    unset: ['HF_TOKEN', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME', 'HUGGINGFACE_HUB_CACHE'],
    env: { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(tmp, 'cache'), HF_HOME: join(tmp, 'home'), ...env },
  });
}

beforeAll(async () => {
  hub = await new FakeHub({ repo: REPO, files: fakeFluxRepo() }).start();
});
afterAll(async () => {
  await hub.close();
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
  tmp = await mkdtemp(join(tmpdir(), 'flux-download-cli-'));
  hub.reset();
  hub.token = null;
});

describe('pnpm flux download', () => {
  it('no REPO: FLUX.1-schnell into HF_HUB_CACHE; stdout is the snapshot folder; a second run fetches nothing', async () => {
    const r = await flux([]);
    expect(r.code, r.stderr).toBe(0);
    const snap = join(tmp, 'cache', 'models--black-forest-labs--FLUX.1-schnell', 'snapshots', hub.commit);
    expect(r.stdout).toBe(`${snap}\n`);
    expect(r.stderr).toContain('downloading transformer/diffusion_pytorch_model.safetensors');
    const t = join(snap, 'transformer/diffusion_pytorch_model.safetensors');
    expect(lstatSync(t).isSymbolicLink()).toBe(true);
    const blob = sha256(hub.files.find((f) => f.path === 'transformer/diffusion_pytorch_model.safetensors')!.content);
    expect(readlinkSync(t)).toBe(`../../../blobs/${blob}`);
    expect(readFileSync(join(tmp, 'cache', 'models--black-forest-labs--FLUX.1-schnell', 'refs', 'main'), 'utf8')).toBe(hub.commit);
    expect(existsSync(join(snap, 'flux1-schnell.safetensors'))).toBe(false);

    hub.reset();
    const again = await flux([]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(`${snap}\n`);
    expect(again.stderr).toContain('everything was already present');
    expect(hub.contentRequests()).toEqual([]);
  });

  it('gated repo without HF_TOKEN: exit 1, one error line saying what to do; with HF_TOKEN it works', async () => {
    hub.token = 'hf_test_token';
    const r = await flux([REPO, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: black-forest-labs\/FLUX\.1-schnell is a gated repository .*accept the license on .*HF_TOKEN/);
    expect(r.stderr).not.toMatch(/\n\s+at /);

    const ok = await flux([REPO, '--quiet'], { HF_TOKEN: 'hf_test_token' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toBe('');
  });

  it('--dir, --revision <commit>, --include: a plain folder with the extra file', async () => {
    const dir = join(tmp, 'plain');
    const r = await flux(['--dir', dir, '--revision', hub.commit, '--include', 'flux1-schnell.safetensors']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${dir}\n`);
    expect(lstatSync(join(dir, 'flux1-schnell.safetensors')).isFile()).toBe(true);
    expect(lstatSync(join(dir, 'vae/diffusion_pytorch_model.safetensors')).isFile()).toBe(true);
    expect(existsSync(join(dir, 'ae.safetensors'))).toBe(false);
    expect(existsSync(join(tmp, 'cache'))).toBe(false);
  });

  it('--dry-run lists the files and writes nothing; bad options are one error line', async () => {
    const r = await flux(['--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^download\s+300 kB\s+transformer\/diffusion_pytorch_model\.safetensors$/m);
    expect(r.stdout.trim().split('\n')).toHaveLength(7);
    expect(existsSync(join(tmp, 'cache'))).toBe(false);
    const bad = await flux(['--frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^error: unknown option --frobnicate/);
  });
});
