/**
 * Runs `pnpm flux <args>` as a user would (a child process through tsx from the repo root) and collects its exit
 * code and output. FLUX_DEBUG is removed so error output is the user's one line; `env` adds or overrides variables,
 * `unset` removes more. The child is killed after `timeoutMs`.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures.ts';

export interface CliResult { code: number | null; stdout: string; stderr: string }

export function runFlux(
  args: string[],
  opts: { env?: Record<string, string>; unset?: string[]; timeoutMs?: number } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['FLUX_DEBUG', ...(opts.unset ?? [])]) delete env[k];
  Object.assign(env, opts.env);
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, 'node_modules/.bin/tsx'), [join(REPO_ROOT, 'packages/cli/src/main.ts'), ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
