/**
 * `pnpm flux serve` as a process: starts on 127.0.0.1:0 with a token, answers the seed's curl command shape,
 * refuses an open non-loopback address without tokens, and shuts down cleanly on SIGTERM.
 */
import { spawn, execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SCHNELL, TINY_MODEL, curlForm } from './helpers.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = join(ROOT, 'packages', 'cli', 'src', 'main.ts');

describe('pnpm flux serve', () => {
  it('serves the model, then exits 0 on SIGTERM after finishing', async () => {
    const child = spawn(TSX, [MAIN, 'serve', '--model', TINY_MODEL, '--port', '0', '--token', 'cli-token', '--log-level', 'warn'], {
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
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(err).toMatch(/SIGTERM: shutting down/);
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
});
