import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isFluxError } from '@flux-ts/core';
import {
  BackendError,
  decideBackend,
  fallbackLine,
  initBackend,
  parseBackendChoice,
  type BackendInfo,
  type NativeStatus,
} from '../../src/runtime/backend.ts';

const NOT_BUILT = { candidate: 'tensorflow (@tensorflow/tfjs-node)', reason: 'native addon not built (run `pnpm setup:native`)' };
const GPU_NOT_BUILT = { candidate: 'tensorflow (@tensorflow/tfjs-node-gpu)', reason: 'native addon not built (see the README)' };
const NONE: NativeStatus = { failures: [GPU_NOT_BUILT, NOT_BUILT] };
const CPU_PKG: NativeStatus = {
  loaded: { pkg: '@tensorflow/tfjs-node', tensorflowVersion: '2.21.0', usingGpu: false },
  failures: [GPU_NOT_BUILT],
};
const GPU_PKG_ON_CPU: NativeStatus = {
  loaded: { pkg: '@tensorflow/tfjs-node-gpu', tensorflowVersion: '2.9.1', usingGpu: false },
  failures: [],
};
const GPU_PKG_ON_GPU: NativeStatus = {
  loaded: { pkg: '@tensorflow/tfjs-node-gpu', tensorflowVersion: '2.9.1', usingGpu: true },
  failures: [],
};

// Normally done by test/setup-backend.ts; repeated here (a no-op then) so the file also runs alone.
beforeAll(async () => {
  await initBackend({ quiet: true });
});

describe('parseBackendChoice', () => {
  it('accepts the four choices (any case) and defaults to auto', () => {
    expect(parseBackendChoice('tensorflow')).toBe('tensorflow');
    expect(parseBackendChoice('WASM')).toBe('wasm');
    expect(parseBackendChoice(' cpu ')).toBe('cpu');
    expect(parseBackendChoice('auto')).toBe('auto');
    expect(parseBackendChoice(undefined)).toBe('auto');
    expect(parseBackendChoice('')).toBe('auto');
  });

  it('rejects anything else with a FluxError naming the source and the allowed values', () => {
    let err: unknown;
    try {
      parseBackendChoice('webgl', 'FLUX_BACKEND');
    } catch (e) {
      err = e;
    }
    expect(isFluxError(err)).toBe(true);
    expect((err as Error).message).toContain('FLUX_BACKEND "webgl"');
    expect((err as Error).message).toContain('auto, tensorflow, wasm, cpu');
  });

  it('initBackend rejects an unknown backend before touching tfjs', async () => {
    const before = tf.getBackend();
    await expect(initBackend({ backend: 'gpu', quiet: true })).rejects.toThrow(/"gpu" is not a backend/);
    expect(tf.getBackend()).toBe(before);
  });
});

describe('decideBackend (the selection rule)', () => {
  it('auto prefers the GPU package when it sees a GPU, with no reason line', () => {
    const d = decideBackend('auto', GPU_PKG_ON_GPU);
    expect(d).toMatchObject({ name: 'tensorflow', package: '@tensorflow/tfjs-node-gpu', device: 'GPU' });
    expect(d.reason).toBeUndefined();
  });

  it('auto on the native CPU package says why there is no GPU backend', () => {
    const d = decideBackend('auto', CPU_PKG);
    expect(d).toMatchObject({ name: 'tensorflow', package: '@tensorflow/tfjs-node', device: 'CPU' });
    expect(d.reason).toContain('no GPU');
    expect(d.reason).toContain('@tensorflow/tfjs-node-gpu: native addon not built');
  });

  it('says so when the GPU package silently runs on the CPU (CUDA libraries missing)', () => {
    for (const req of ['auto', 'tensorflow'] as const) {
      const d = decideBackend(req, GPU_PKG_ON_CPU);
      expect(d).toMatchObject({ name: 'tensorflow', package: '@tensorflow/tfjs-node-gpu', device: 'CPU' });
      expect(d.reason).toMatch(/found no GPU device.*runs on the CPU.*CUDA 11\.2/);
    }
  });

  it('auto falls back to wasm, naming both native packages and the fix', () => {
    const d = decideBackend('auto', NONE);
    expect(d.name).toBe('wasm');
    expect(d.reason).toContain('native TensorFlow is unavailable');
    expect(d.reason).toContain('@tensorflow/tfjs-node: native addon not built (run `pnpm setup:native`)');
    expect(d.reason).toContain('@tensorflow/tfjs-node-gpu');
    expect(d.unavailable).toHaveLength(2);
  });

  it('auto never picks the pure-JS cpu backend while wasm is there', () => {
    for (const n of [NONE, CPU_PKG, GPU_PKG_ON_CPU, GPU_PKG_ON_GPU]) expect(decideBackend('auto', n).name).not.toBe('cpu');
  });

  it('forcing tensorflow when no native package loads is a BackendError (a FluxError) with the fix', () => {
    let err: unknown;
    try {
      decideBackend('tensorflow', NONE);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BackendError);
    expect(isFluxError(err)).toBe(true);
    expect((err as BackendError).code).toBe('BACKEND_UNAVAILABLE');
    expect((err as Error).message).toMatch(/tensorflow backend is not available: .*pnpm setup:native.*--backend wasm/);
  });

  it('forcing a backend that is available prints nothing', () => {
    expect(decideBackend('tensorflow', CPU_PKG).reason).toBeUndefined();
    for (const name of ['wasm', 'cpu'] as const) {
      const d = decideBackend(name, NONE);
      expect(d.name).toBe(name);
      expect(d.reason).toBeUndefined();
    }
  });

  it('the fallback line is one line naming the backend, device and reason', () => {
    const info: BackendInfo = {
      device: 'WebAssembly SIMD, 1 thread',
      requested: 'auto',
      tfjsVersion: '4.22.0',
      ...decideBackend('auto', NONE),
    };
    const line = fallbackLine(info);
    expect(line).not.toContain('\n');
    expect(line).toMatch(/^flux: using the wasm backend \(WebAssembly SIMD, 1 thread\); native TensorFlow is unavailable: /);
  });
});

describe('initBackend in this process', () => {
  it('forcing wasm and cpu selects them in the shared tfjs-core and leaks no tensors', async () => {
    const before = tf.getBackend();
    try {
      for (const name of ['wasm', 'cpu'] as const) {
        const info = await initBackend({ backend: name, quiet: true });
        expect(info).toMatchObject({ name, requested: name, tfjsVersion: tf.version_core });
        expect(tf.getBackend()).toBe(name);
        const n0 = tf.memory().numTensors;
        const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])));
        expect(Array.from(await y.data())).toEqual([17, 39]);
        y.dispose();
        expect(tf.memory().numTensors).toBe(n0);
      }
    } finally {
      await tf.setBackend(before);
    }
  });
});

describe('the fallback line, from a fresh process', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = join(here, '..', '..', '..', '..');
  const script = [
    "const { initBackend } = await import('./packages/flux/src/runtime/backend.ts');",
    'const info = await initBackend();',
    'process.stdout.write(JSON.stringify(info));',
  ].join('\n');
  const runAuto = () => {
    // The module's own defaults must keep libtensorflow's start-up logging out.
    const env: NodeJS.ProcessEnv = { ...process.env, FLUX_BACKEND: 'auto' };
    delete env.TF_CPP_MIN_LOG_LEVEL;
    delete env.TF_ENABLE_ONEDNN_OPTS;
    return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
  };

  it('auto writes at most one line to stderr, and exactly one when it fell back', () => {
    const r = runAuto();
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as BackendInfo;
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    if (info.reason) {
      expect(lines).toEqual([fallbackLine(info)]);
    } else {
      expect(lines).toEqual([]);
    }
    expect(['tensorflow', 'wasm']).toContain(info.name);
  });
});
