/**
 * Hub downloads against a fake hub on 127.0.0.1 (test/harness/fake-hub.ts): cache layout, resume, skip, --dir,
 * HF_ENDPOINT, gated repos, hash mismatches, network failures. No real network.
 */
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isFluxError } from '@flux-ts/core';
import { FakeHub, fakeFluxRepo, gitBlobSha1, sha256 } from '../../../../test/harness/fake-hub.ts';
import {
  blobPath, createProgressReporter, downloadRepo, globToRegExp, hfCacheDir, repoFolderName, resolveCachedRevision,
  selectFiles, snapshotPath, type DownloadEvent, type DownloadOptions,
} from '../../src/hub/index.ts';

const REPO = 'fake-org/FLUX.1-fake';
const WANTED = [
  'model_index.json',
  'scheduler/scheduler_config.json',
  'tokenizer/vocab.json',
  'transformer/config.json',
  'transformer/diffusion_pytorch_model.safetensors',
  'vae/config.json',
  'vae/diffusion_pytorch_model.safetensors',
];

let hub: FakeHub;
let tmp: string;
let cache: string;
const file = (p: string) => hub.files.find((f) => f.path === p)!;

function opts(extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { repo: REPO, cacheDir: cache, endpoint: hub.url, token: null, retries: 3, retryDelayMs: 1, env: { HF_HOME: tmp }, ...extra };
}

async function expectFluxError(p: Promise<unknown>, code: string): Promise<string> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(isFluxError(e), `expected a FluxError, got ${e}`).toBe(true);
  expect((e as { code: string }).code).toBe(code);
  return (e as Error).message;
}

/** Every path under `dir`, relative, folders with a trailing slash; symlinks shown as `-> target`. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p);
      if (st.isSymbolicLink()) out.push(`${rel} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else out.push(rel);
    }
  };
  walk(dir);
  return out;
}

beforeAll(async () => {
  hub = await new FakeHub({ repo: REPO, files: fakeFluxRepo() }).start();
});
afterAll(async () => {
  await hub.close();
});
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'flux-hub-'));
  cache = join(tmp, 'hub');
  hub.reset();
});
afterEach(async () => {
  Object.assign(hub, { token: null, dropAfter: null, dropCount: 0, ignoreRange: false, apiBlobs: true });
  hub.corrupt.clear();
  await rm(tmp, { recursive: true, force: true });
});

describe('cache layout helpers', () => {
  it('hfCacheDir: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub', () => {
    expect(hfCacheDir({ HF_HUB_CACHE: '/a/b', HF_HOME: '/c' })).toBe('/a/b');
    expect(hfCacheDir({ HF_HOME: '/c' })).toBe('/c/hub');
    expect(hfCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
    expect(hfCacheDir({})).toMatch(/\.cache\/huggingface\/hub$/);
  });

  it('repoFolderName and snapshotPath (refs/<revision> resolved)', async () => {
    expect(repoFolderName('black-forest-labs/FLUX.1-schnell')).toBe('models--black-forest-labs--FLUX.1-schnell');
    expect(snapshotPath(REPO, 'main', cache)).toBeNull();
    const sha = 'a'.repeat(40);
    const repoDir = join(cache, repoFolderName(REPO));
    await mkdir(join(repoDir, 'refs'), { recursive: true });
    await mkdir(join(repoDir, 'snapshots', sha), { recursive: true });
    await writeFile(join(repoDir, 'refs', 'main'), sha);
    expect(resolveCachedRevision(REPO, 'main', cache)).toBe(sha);
    expect(snapshotPath(REPO, 'main', cache)).toBe(join(repoDir, 'snapshots', sha));
    expect(snapshotPath(REPO, sha, cache)).toBe(join(repoDir, 'snapshots', sha));
    expect(snapshotPath(REPO, 'v2', cache)).toBeNull();
  });
});

describe('file selection', () => {
  const paths = fakeFluxRepo().map((f) => f.path);
  it('default: the FLUX diffusers pipeline files only (no single-file duplicates, no .bin/.onnx, no README)', () => {
    expect(selectFiles(paths).sort()).toEqual(WANTED);
  });
  it('--include adds (and overrides the default excludes), --exclude removes', () => {
    expect(selectFiles(paths, { include: ['flux1-schnell.safetensors'] })).toContain('flux1-schnell.safetensors');
    expect(selectFiles(paths, { include: ['*'] })).toEqual(paths);
    expect(selectFiles(paths, { exclude: ['vae/'] }).some((p) => p.startsWith('vae/'))).toBe(false);
    expect(selectFiles(['a.safetensors', 'b.bin', 'sub/c.json'])).toEqual(['a.safetensors', 'sub/c.json']);
  });
  it('fnmatch globs: * crosses folders, ? one char, [!x] classes', () => {
    expect(globToRegExp('*.json').test('scheduler/scheduler_config.json')).toBe(true);
    expect(globToRegExp('model-0000?.safetensors').test('model-00001.safetensors')).toBe(true);
    expect(globToRegExp('[!a]b').test('ab')).toBe(false);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
  });
});

describe('downloadRepo into the HF cache', () => {
  it('writes blobs/<etag>, relative snapshot symlinks and refs/main exactly', async () => {
    const r = await downloadRepo(opts());
    const repoDir = join(cache, `models--fake-org--FLUX.1-fake`);
    const snap = join(repoDir, 'snapshots', hub.commit);
    expect(r.path).toBe(snap);
    expect(r.commit).toBe(hub.commit);
    expect(r.files.map((f) => f.path).sort()).toEqual(WANTED);
    expect(r.files.every((f) => f.status === 'downloaded')).toBe(true);

    const etags = WANTED.map((p) => hub.etag(file(p)));
    const up = (p: string) => '../'.repeat(p.split('/').length + 1);
    expect(tree(repoDir)).toEqual([
      'blobs/',
      ...etags.slice().sort().map((e) => `blobs/${e}`),
      'refs/',
      'refs/main',
      'snapshots/',
      `snapshots/${hub.commit}/`,
      `snapshots/${hub.commit}/model_index.json -> ../../blobs/${hub.etag(file('model_index.json'))}`,
      `snapshots/${hub.commit}/scheduler/`,
      `snapshots/${hub.commit}/scheduler/scheduler_config.json -> ${up('scheduler/x')}blobs/${hub.etag(file('scheduler/scheduler_config.json'))}`,
      `snapshots/${hub.commit}/tokenizer/`,
      `snapshots/${hub.commit}/tokenizer/vocab.json -> ../../../blobs/${hub.etag(file('tokenizer/vocab.json'))}`,
      `snapshots/${hub.commit}/transformer/`,
      `snapshots/${hub.commit}/transformer/config.json -> ../../../blobs/${hub.etag(file('transformer/config.json'))}`,
      `snapshots/${hub.commit}/transformer/diffusion_pytorch_model.safetensors -> ../../../blobs/${sha256(file('transformer/diffusion_pytorch_model.safetensors').content)}`,
      `snapshots/${hub.commit}/vae/`,
      `snapshots/${hub.commit}/vae/config.json -> ../../../blobs/${hub.etag(file('vae/config.json'))}`,
      `snapshots/${hub.commit}/vae/diffusion_pytorch_model.safetensors -> ../../../blobs/${sha256(file('vae/diffusion_pytorch_model.safetensors').content)}`,
    ]);
    expect(readFileSync(join(repoDir, 'refs', 'main'), 'utf8')).toBe(hub.commit);
    for (const p of WANTED) expect(Buffer.compare(readFileSync(join(snap, p)), Buffer.from(file(p).content))).toBe(0);
    expect(gitBlobSha1(readFileSync(join(snap, 'model_index.json')))).toBe(hub.etag(file('model_index.json')));
    // the helpers another module uses to find the model agree with what was written
    expect(snapshotPath(REPO, 'main', cache)).toBe(snap);
    expect(blobPath(REPO, etags[0], cache)).toBe(join(repoDir, 'blobs', etags[0]));
  });

  it('a second run downloads nothing', async () => {
    await downloadRepo(opts());
    hub.reset();
    const r = await downloadRepo(opts());
    expect(r.files.every((f) => f.status === 'cached')).toBe(true);
    expect(r.downloadedBytes).toBe(0);
    expect(hub.contentRequests()).toEqual([]);
    expect(hub.servedTotal()).toBe(0);
  });

  it('resumes a file cut off mid-transfer without fetching its first bytes again (retry in the same run)', async () => {
    const big = file('transformer/diffusion_pytorch_model.safetensors');
    hub.dropAfter = 120_000;
    hub.dropCount = 1;
    const events: DownloadEvent[] = [];
    await downloadRepo(opts({ onEvent: (e) => events.push(e) }));
    // The resume point is what reached the disk: at most the 120,000 bytes sent (see the NOTE below).
    const cdnGets = hub.requests.filter((r) => r.server === 'cdn');
    expect(cdnGets.map((r) => r.headers.range === undefined)).toEqual([true, false, true]);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdnGets[1].headers.range as string)?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(120_000);
    expect(hub.served.get(big.path)).toBe(120_000 + big.content.byteLength - resumedAt);
    expect(events.some((e) => e.type === 'retry')).toBe(true);
    expect(events).toContainEqual({ type: 'start', path: big.path, size: 300_000, offset: resumedAt });
  });

  it('resumes across runs: a failed run leaves blobs/<etag>.incomplete, the next run continues it', async () => {
    const big = file('transformer/diffusion_pytorch_model.safetensors');
    const blob = join(cache, repoFolderName(REPO), 'blobs', sha256(big.content));
    hub.dropAfter = 50_000;
    hub.dropCount = 100;
    const msg = await expectFluxError(downloadRepo(opts({ retries: 0 })), 'HUB_NETWORK');
    expect(msg).toMatch(/downloading transformer\/diffusion_pytorch_model\.safetensors failed after 1 attempt/);
    expect(msg).toMatch(/resumes/);
    expect(msg).not.toMatch(/\n\s+at /);
    // NOTE: fetch may drop body bytes it had buffered but not yet handed over when the connection dies (a
    // ReadableStream error clears its queue), so the kept prefix is at most what the server sent, never garbage.
    const kept = readFileSync(`${blob}.incomplete`);
    expect(kept.byteLength).toBeGreaterThan(0);
    expect(kept.byteLength).toBeLessThanOrEqual(50_000);
    expect(Buffer.compare(kept, Buffer.from(big.content.subarray(0, kept.byteLength)))).toBe(0);
    expect(existsSync(blob)).toBe(false);
    hub.dropCount = 0;
    hub.reset();
    await downloadRepo(opts());
    expect(hub.served.get(big.path)).toBe(300_000 - kept.byteLength);
    expect(hub.requests.find((r) => r.server === 'cdn')!.headers.range).toBe(`bytes=${kept.byteLength}-`);
    expect(sha256(readFileSync(blob))).toBe(sha256(big.content));
    expect(existsSync(`${blob}.incomplete`)).toBe(false);
  });

  it('a server that ignores Range (200): the file is started over and still correct', async () => {
    const big = file('vae/diffusion_pytorch_model.safetensors');
    const blob = join(cache, repoFolderName(REPO), 'blobs', sha256(big.content));
    await mkdir(join(blob, '..'), { recursive: true });
    await writeFile(`${blob}.incomplete`, big.content.subarray(0, 30_000));
    hub.ignoreRange = true;
    const events: DownloadEvent[] = [];
    await downloadRepo(opts({ onEvent: (e) => events.push(e) }));
    expect(events.some((e) => e.type === 'restart' && e.path === big.path)).toBe(true);
    expect(hub.served.get(big.path)).toBe(100_000);
    expect(sha256(readFileSync(blob))).toBe(sha256(big.content));
  });

  it('hash mismatch (LFS sha256): FluxError, nothing left in the cache for that file', async () => {
    const big = file('vae/diffusion_pytorch_model.safetensors');
    hub.corrupt.add(big.path);
    const msg = await expectFluxError(downloadRepo(opts()), 'HUB_HASH_MISMATCH');
    expect(msg).toContain('vae/diffusion_pytorch_model.safetensors');
    expect(msg).toMatch(/sha256 [0-9a-f]{64} instead of [0-9a-f]{64}/);
    const blobs = readdirSync(join(cache, repoFolderName(REPO), 'blobs'));
    expect(blobs.filter((b) => b.startsWith(sha256(big.content)))).toEqual([]);
    expect(existsSync(join(cache, repoFolderName(REPO), 'snapshots', hub.commit, big.path))).toBe(false);
  });

  it('hash mismatch on a regular file (git blob sha1) is caught too', async () => {
    hub.corrupt.add('model_index.json');
    const msg = await expectFluxError(downloadRepo(opts()), 'HUB_HASH_MISMATCH');
    expect(msg).toMatch(/model_index\.json .*git blob sha1/);
  });

  it('HF_ENDPOINT and HF_HUB_CACHE are honoured from the environment', async () => {
    const r = await downloadRepo({ repo: REPO, retryDelayMs: 1, env: { HF_ENDPOINT: `${hub.url}/`, HF_HUB_CACHE: cache, HF_HOME: tmp } });
    expect(r.path).toBe(join(cache, repoFolderName(REPO), 'snapshots', hub.commit));
    expect(hub.requests[0].url).toBe(`/api/models/${REPO}/revision/main?blobs=True`);
  });

  it('without sizes in the listing, HEAD requests supply etag and size (redirect to the CDN not followed)', async () => {
    hub.apiBlobs = false;
    await downloadRepo(opts());
    const heads = hub.requests.filter((r) => r.method === 'HEAD');
    expect(heads.length).toBe(WANTED.length);
    expect(heads.every((r) => r.server === 'hub')).toBe(true);
    const snap = snapshotPath(REPO, 'main', cache)!;
    expect(readlinkSync(join(snap, 'vae/diffusion_pytorch_model.safetensors'))).toBe(`../../../blobs/${sha256(file('vae/diffusion_pytorch_model.safetensors').content)}`);
  });
});

describe('gated repositories', () => {
  it('no token: a FluxError that says to accept the license and set HF_TOKEN; nothing written', async () => {
    hub.token = 'hf_secret';
    const msg = await expectFluxError(downloadRepo(opts()), 'HUB_GATED');
    expect(msg).toMatch(/gated/);
    expect(msg).toMatch(/accept the license on http:\/\/127\.0\.0\.1:\d+\/fake-org\/FLUX\.1-fake/);
    expect(msg).toMatch(/HF_TOKEN/);
    const blobs = join(cache, repoFolderName(REPO), 'blobs');
    expect(existsSync(blobs) ? readdirSync(blobs).filter((b) => b.endsWith('.incomplete')) : []).toEqual([]);
  });

  it('a refused token is named as such', async () => {
    hub.token = 'hf_secret';
    const msg = await expectFluxError(downloadRepo(opts({ token: 'hf_wrong' })), 'HUB_GATED');
    expect(msg).toMatch(/HF_TOKEN is set but the hub refused it/);
  });

  it('HF_TOKEN goes to the hub as a Bearer token, never to the CDN it redirects to', async () => {
    hub.token = 'hf_secret';
    const r = await downloadRepo(opts({ token: undefined, env: { HF_TOKEN: 'hf_secret', HF_HOME: tmp } }));
    expect(r.files).toHaveLength(WANTED.length);
    const hubReqs = hub.requests.filter((q) => q.server === 'hub');
    const cdnReqs = hub.requests.filter((q) => q.server === 'cdn');
    expect(cdnReqs.length).toBe(2);
    expect(hubReqs.every((q) => q.headers.authorization === 'Bearer hf_secret')).toBe(true);
    expect(cdnReqs.every((q) => q.headers.authorization === undefined)).toBe(true);
  });
});

describe('errors and --dir', () => {
  it('unknown repo / revision: HUB_NOT_FOUND', async () => {
    await expectFluxError(downloadRepo(opts({ repo: 'fake-org/nope' })), 'HUB_NOT_FOUND');
    const msg = await expectFluxError(downloadRepo(opts({ revision: 'v9' })), 'HUB_NOT_FOUND');
    expect(msg).toMatch(/revision not found/);
  });

  it('a listing with a path escaping the folder is refused before anything is written', async () => {
    const evil = await new FakeHub({ repo: REPO, files: [{ path: 'model_index.json', content: new Uint8Array(2) }, { path: '../../evil.json', content: new Uint8Array(3) }] }).start();
    try {
      await expectFluxError(downloadRepo(opts({ endpoint: evil.url, include: ['*'] })), 'HUB_BAD_RESPONSE');
      expect(existsSync(cache)).toBe(false);
    } finally {
      await evil.close();
    }
  });

  it('a bad repo id is an INVALID_ARGUMENT before any request', async () => {
    await expectFluxError(downloadRepo(opts({ repo: '../etc' })), 'INVALID_ARGUMENT');
    expect(hub.requests).toEqual([]);
  });

  it('an unreachable hub: retries, then HUB_NETWORK naming the endpoint', async () => {
    const dead = new FakeHub({ repo: REPO, files: [] });
    await dead.start();
    const url = dead.url;
    await dead.close();
    const retries: DownloadEvent[] = [];
    const msg = await expectFluxError(downloadRepo(opts({ endpoint: url, retries: 2, onEvent: (e) => retries.push(e) })), 'HUB_NETWORK');
    expect(retries.filter((e) => e.type === 'retry')).toHaveLength(2);
    expect(msg).toMatch(/failed after 3 attempts/);
    expect(msg).toContain(url);
  });

  it('--dir: plain folder layout, and a second run downloads nothing', async () => {
    const dir = join(tmp, 'model');
    const r = await downloadRepo(opts({ localDir: dir }));
    expect(r.path).toBe(dir);
    for (const p of WANTED) {
      expect(lstatSync(join(dir, p)).isFile()).toBe(true);
      expect(Buffer.compare(readFileSync(join(dir, p)), Buffer.from(file(p).content))).toBe(0);
    }
    expect(existsSync(join(cache))).toBe(false);
    expect(existsSync(join(dir, 'flux1-schnell.safetensors'))).toBe(false);
    hub.reset();
    const again = await downloadRepo(opts({ localDir: dir }));
    expect(again.files.every((f) => f.status === 'cached')).toBe(true);
    expect(hub.contentRequests()).toEqual([]);
  });

  it('--include brings the single-file checkpoint; dry run writes nothing', async () => {
    const r = await downloadRepo(opts({ include: ['flux1-schnell.safetensors'], dryRun: true }));
    expect(r.files.map((f) => f.path)).toContain('flux1-schnell.safetensors');
    expect(r.files.every((f) => f.status === 'planned')).toBe(true);
    expect(existsSync(cache)).toBe(false);
  });
});

describe('progress output', () => {
  it('plain lines when not a TTY; a redrawn bar with speed and ETA on a TTY', async () => {
    let plain = '';
    const p = createProgressReporter({ stream: { write: (s: string) => (plain += s) }, tty: false });
    await downloadRepo(opts({ onEvent: p.onEvent }));
    p.end();
    expect(plain).toMatch(/^fake-org\/FLUX\.1-fake @ c0ffee0000: 7 files, 400 kB\n/);
    expect(plain).toContain('downloading transformer/diffusion_pytorch_model.safetensors (300 kB)\n');
    expect(plain).toContain('done vae/diffusion_pytorch_model.safetensors\n');
    expect(plain).not.toContain('\r');

    let t = 0;
    let bar = '';
    const q = createProgressReporter({ stream: { write: (s: string) => (bar += s) }, tty: true, now: () => (t += 50) });
    await downloadRepo(opts({ onEvent: q.onEvent, cacheDir: join(tmp, 'other') }));
    q.end();
    expect(bar).toMatch(/\r\x1b\[2K\[#+\.*\]\s+\d+% [\d.]+ kB\/400 kB [\d.]+ [kMG]?B\/s ETA \S+ /);
    expect(bar).toMatch(/\[#{24}\] 100%/);
  });
});
