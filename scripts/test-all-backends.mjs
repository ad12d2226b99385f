#!/usr/bin/env node
/**
 * `pnpm test`: runs vitest once per tensor backend: FLUX_BACKEND=wasm (always), then
 * FLUX_BACKEND=tensorflow when the native backend loads (`pnpm setup:native`), saying so when it is
 * skipped. Extra arguments go to vitest (`pnpm test packages/flux` runs that folder on both).
 * With FLUX_BACKEND already set, runs vitest once with it. Exits non-zero if any run fails.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
const args = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));

/** Does the tensorflow backend load here? Returns undefined if it does, else the reason. */
function nativeUnavailableReason() {
  const probe = [
    "const { initBackend } = await import('./packages/flux/src/runtime/backend.ts');",
    "try { await initBackend({ backend: 'tensorflow', quiet: true }); }",
    'catch (e) { process.stdout.write(e.message); process.exit(3); }',
  ].join('\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, FLUX_BACKEND: '' },
  });
  if (r.status === 0) return undefined;
  if (r.status === 3) return r.stdout.trim();
  return `the probe failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n')[0]}`;
}

function runVitest(backend) {
  console.log(`\n=== vitest with FLUX_BACKEND=${backend} ===`);
  const r = spawnSync(process.execPath, [vitest, 'run', ...args], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, FLUX_BACKEND: backend },
  });
  return r.status ?? 1;
}

const forced = process.env.FLUX_BACKEND;
const results = [];
if (forced) {
  results.push([forced, runVitest(forced)]);
} else {
  results.push(['wasm', runVitest('wasm')]);
  const why = nativeUnavailableReason();
  if (why === undefined) {
    results.push(['tensorflow', runVitest('tensorflow')]);
  } else {
    console.log(`\n=== skipping the FLUX_BACKEND=tensorflow run: ${why} ===`);
    // CI insists on both backends (.ci/run sets this after `pnpm setup:native`).
    if (process.env.FLUX_REQUIRE_NATIVE === '1') results.push(['tensorflow', 1]);
  }
}

console.log('\n' + results.map(([b, code]) => `FLUX_BACKEND=${b}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`}`).join('\n'));
process.exitCode = results.every(([, code]) => code === 0) ? 0 : 1;
