/**
 * `pnpm flux serve` as a process: starts on 127.0.0.1:0 with a token, answers the seed's curl command shape,
 * refuses an open non-loopback address without tokens, and shuts down cleanly on SIGTERM; through the documented
 * launcher (`pnpm flux serve`) too: SIGTERM to pnpm stops the server, and Ctrl-C (SIGINT to the whole process
 * group, which pnpm also forwards) drains once instead of dropping the running job.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { sqliteAvailable } from '../src/index.ts';
import { SCHNELL, TINY_MODEL, curlForm, getJson, postJson } from './helpers.ts';

const SQLITE = sqliteAvailable().ok;

const ROOT = new URL('../../../', import.meta.url).pathname;
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = join(ROOT, 'packages', 'cli', 'src', 'main.ts');

describe('pnpm flux serve', () => {
  it('serves the model (sync and async, with its journal), then exits 0 on SIGTERM after finishing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flux-serve-cli-'));
    const journal = SQLITE ? ['--journal', join(dir, 'jobs.sqlite')] : ['--no-journal'];
    const child = spawn(TSX, [MAIN, 'serve', '--model', TINY_MODEL, '--port', '0', '--token', 'cli-token', '--log-level', 'warn', '--result-ttl', '600', ...journal], {
      cwd: ROOT,
      env: { ...process.env, FLUX_API_TOKENS: 'env-token' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "serving" line in 60 s:\n${err}`)), 60_000);
        child.stderr.on('data', () => {
          const m = /serving (http:\/\/\S+?)\/v1\/inference\/black-forest-labs\/FLUX-1-schnell/.exec(err);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        child.on('exit', () => reject(new Error(`serve exited:\n${err}`)));
      });
      const r = await curlForm(url + SCHNELL, [['prompt', 'A photo of an astronaut riding a horse on Mars.'], ['width', '128'], ['height', '128'], ['num_inference_steps', '2']], {
        Authorization: 'bearer env-token',
      });
      expect(r.status).toBe(200);
      expect(r.body.images[0]).toMatch(/^data:image\/png;base64,/);
      const denied = await curlForm(url + SCHNELL, [['prompt', 'x']], { Authorization: 'bearer wrong' });
      expect(denied.status).toBe(401);
      const queued = await curlForm(url + SCHNELL, [['prompt', 'a cat'], ['width', '128'], ['height', '128'], ['num_inference_steps', '2']], { Authorization: 'bearer env-token', Prefer: 'respond-async' });
      expect(queued.status).toBe(202);
      for (;;) {
        const s = await getJson(`${url}/v1/inference/requests/${queued.body.request_id}`, { authorization: 'bearer env-token' });
        if (s.status === 'succeeded') break;
        expect(['queued', 'running']).toContain(s.status);
        await new Promise((r) => setTimeout(r, 50));
      }
      if (SQLITE) expect(err).toContain(`job journal: ${join(dir, 'jobs.sqlite')}`);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(err).toMatch(/SIGTERM: shutting down/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a non-loopback address without tokens, naming --no-auth', async () => {
    const env = { ...process.env };
    delete env.FLUX_API_TOKENS;
    const res = await promisify(execFile)(TSX, [MAIN, 'serve', '--model', TINY_MODEL, '--host', '0.0.0.0', '--port', '0'], { cwd: ROOT, env }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without auth.*--no-auth/);
  });

  it('exits with one line when the port is taken, after its model thread started (nothing keeps the process alive)', async () => {
    const blocker = createServer(() => {});
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const t0 = Date.now();
      const res = await promisify(execFile)(TSX, [MAIN, 'serve', '--model', TINY_MODEL, '--port', String(port), '--token', 't', '--no-journal'], { cwd: ROOT, timeout: 60_000 }).then(
        () => ({ code: 0, stderr: '', killed: false }),
        (e: { code: number; stderr: string; killed: boolean }) => e,
      );
      expect(res.killed).toBe(false); // before the fix it printed the error and hung, its generation thread alive
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(new RegExp(`port ${port}.*(in use|taken)`, 'i'));
      expect(Date.now() - t0).toBeLessThan(60_000);
    } finally {
      blocker.close();
    }
  });
});

/** Starts `pnpm flux serve` in a process group of its own; resolves with its base URL once it serves. */
async function launch(args: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn('pnpm', ['flux', 'serve', '--model', TINY_MODEL, '--port', '0', '--token', 'cli-token', '--log-level', 'warn', '--no-journal', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', () => {
      const m = /serving (http:\/\/\S+?)\/v1\/inference/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(`serve exited:\n${err}`)));
  });
  return { child, url, stderr: () => err, exited };
}

/** Resolves once nothing listens at `url` any more. */
async function gone(url: string): Promise<void> {
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then(() => true, () => false);
    if (!ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('pnpm flux serve through the launcher', () => {
  it('stops the server when pnpm gets SIGTERM (no orphan keeps serving)', async () => {
    const { child, url, stderr, exited } = await launch([]);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    process.kill(child.pid!, 'SIGTERM');
    await exited;
    await gone(url);
    expect(stderr()).toMatch(/SIGTERM: shutting down/);
  });

  it('drains on Ctrl-C (SIGINT to the process group): the running job is answered, one shutdown, exit 0', async () => {
    const { child, url, stderr, exited } = await launch([]);
    const auth = { authorization: 'Bearer cli-token' };
    const job = postJson(`${url}${SCHNELL}`, { prompt: 'a cat', width: 256, height: 256, num_inference_steps: 4, seed: 1 }, auth);
    for (;;) {
      const h = (await (await fetch(`${url}/healthz`)).json()) as { running: number };
      if (h.running === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    process.kill(-child.pid!, 'SIGINT'); // what a terminal does on Ctrl-C
    const r = await job;
    expect(r.status).toBe(200);
    expect(await exited).toBe(0);
    await gone(url);
    expect(stderr().match(/SIGINT: shutting down/g)).toHaveLength(1);
    expect(stderr()).not.toMatch(/again: exiting now/);
  });
});
