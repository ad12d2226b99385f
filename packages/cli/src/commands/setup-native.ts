/**
 * `flux-ts setup-native` (`pnpm setup:native` in a clone): builds the native CPU backend by running the script this
 * package ships (scripts/setup-native.sh): the TensorFlow C library from the `tensorflow-cpu` wheel on PyPI, placed
 * under @tensorflow/tfjs-node, whose addon is rebuilt against this Node. The same script, the same behaviour.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FluxError } from '@flux-ts/core';
import type { CommandSpec } from '../command.ts';

export const command: CommandSpec = {
  name: 'setup-native',
  usage: '',
  description: `Builds the native CPU backend (TensorFlow 2.21.0 from the tensorflow-cpu wheel on PyPI, tfjs-node's addon rebuilt for this Node). Needs Linux x86_64, python3 with pip, a C++ compiler and make. Idempotent.`,
  groups: [],
  epilog: `environment:
  FLUX_TF_VERSION=V        tensorflow-cpu version (default 2.21.0; 2.12 or newer)
  FLUX_NATIVE_CACHE=DIR    where the wheel and library are cached (default $XDG_CACHE_HOME/flux-ts/native)
  FLUX_NATIVE_FORCE=1      rebuild even when a working addon is found`,
  run() {
    const script = fileURLToPath(new URL('../../scripts/setup-native.sh', import.meta.url));
    return new Promise<number>((resolve, reject) => {
      const child = spawn('bash', [script], { stdio: 'inherit' });
      child.on('error', (e) => reject(new FluxError('SETUP_FAILED', `cannot run bash for ${script}: ${e.message}`)));
      child.on('exit', (code) => resolve(code ?? 1));
    });
  },
};
