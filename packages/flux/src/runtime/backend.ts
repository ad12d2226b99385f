/**
 * The one place that decides which TensorFlow.js backend runs the models.
 *
 * Order for `auto` (the default):
 *   1. `tensorflow` through @tensorflow/tfjs-node-gpu  (libtensorflow with CUDA)
 *   2. `tensorflow` through @tensorflow/tfjs-node      (native libtensorflow on CPU; `pnpm setup:native`)
 *   3. `wasm`       through @tensorflow/tfjs-backend-wasm (always installed, single-threaded in Node)
 *   4. `cpu`        through @tensorflow/tfjs-backend-cpu  (pure JavaScript, for debugging only; never chosen by auto)
 * `--backend` / FLUX_BACKEND force one; forcing one that cannot load is a BackendError.
 * When auto falls back, or the GPU package silently runs on CPU, ONE line on stderr says what was
 * chosen and why the better backend was not available.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import util from 'node:util';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { FluxError } from '@flux-ts/core';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

/** Where model weights live during a forward: all uploaded once, or read per block from disk and disposed. */
/**
 * Where a model's weights live: 'streamed' (read, built, used and freed module by module, every forward),
 * 'resident' (built once and kept), 'fp8' (kept, Linear weights as fp8 e4m3fn and cast to bf16 per use: half the
 * memory of bf16; bf16 precision on the native backend only).
 */
export type Residency = 'resident' | 'streamed' | 'fp8';
export type BackendChoice = BackendName | 'auto';
export const BACKEND_CHOICES: readonly BackendChoice[] = Object.freeze(['auto', 'tensorflow', 'wasm', 'cpu']);

/** The npm packages that provide the `tensorflow` backend, best first. */
export const NATIVE_PACKAGES = Object.freeze(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const);
export type NativePackage = (typeof NATIVE_PACKAGES)[number];

export class BackendError extends FluxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BACKEND_UNAVAILABLE', message, options);
    this.name = 'BackendError';
  }
}

export interface Unavailable {
  /** `tensorflow (@tensorflow/tfjs-node-gpu)`, `wasm`, ... */
  candidate: string;
  reason: string;
}

export interface BackendInfo {
  name: BackendName;
  /** `GPU` or `CPU` for tensorflow, `WebAssembly SIMD, 1 thread` for wasm, `JavaScript` for cpu. */
  device: string;
  /** Why a better backend is not in use (the line printed on stderr); absent when nothing better was possible. */
  reason?: string;
  requested: BackendChoice;
  /** The npm package providing the backend. */
  package: string;
  /** @tensorflow/tfjs-core version. */
  tfjsVersion: string;
  /** libtensorflow version, for the tensorflow backend. */
  tensorflowVersion?: string;
  /** Better candidates that were tried (or probed) and could not be used, best first. */
  unavailable: Unavailable[];
}

export interface InitBackendOptions {
  /** Defaults to the FLUX_BACKEND environment variable, then `auto`. */
  backend?: BackendChoice | string;
  /** Do not print the fallback line. */
  quiet?: boolean;
  /** Where the fallback line goes (default: stderr). */
  log?: (line: string) => void;
}

/** Checks a user-supplied backend name (`--backend` / FLUX_BACKEND). */
export function parseBackendChoice(value: string | undefined, source = '--backend'): BackendChoice {
  if (value === undefined || value === '') return 'auto';
  const v = value.trim().toLowerCase();
  if ((BACKEND_CHOICES as readonly string[]).includes(v)) return v as BackendChoice;
  throw new FluxError(
    'BAD_BACKEND',
    `${source} "${value}" is not a backend: use one of ${BACKEND_CHOICES.join(', ')}.`,
  );
}

// ---------------------------------------------------------------------------------------------------
// native packages

const requireHere = createRequire(import.meta.url);

type NativeProbe =
  | { ok: true; pkg: NativePackage; pkgJson: string; binding: string }
  | { ok: false; pkg: NativePackage; reason: string };

interface NativeLoaded {
  ok: true;
  pkg: NativePackage;
  tensorflowVersion: string;
  usingGpu: boolean;
}
type NativeState = NativeLoaded | { ok: false; pkg: NativePackage; reason: string };

const HOW_TO_FIX: Record<NativePackage, string> = {
  '@tensorflow/tfjs-node': 'run `pnpm setup:native`',
  '@tensorflow/tfjs-node-gpu': 'needs CUDA 11.2 + cuDNN 8.1 and `pnpm rebuild @tensorflow/tfjs-node-gpu`; see the README',
};

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].trim();
}

/**
 * Is the package installed and does its native addon load? Loads only the addon (the .node file and
 * libtensorflow), not the package: a failed package load would leave its kernels registered.
 */
function probeNative(pkg: NativePackage): NativeProbe {
  let pkgJson: string;
  try {
    pkgJson = requireHere.resolve(`${pkg}/package.json`);
  } catch {
    return { ok: false, pkg, reason: 'not installed' };
  }
  const requirePkg = createRequire(pkgJson);
  let binding: string;
  try {
    // The rule the package itself uses to find its addon (lib/napi-v<N>/tfjs_binding.node).
    const preGyp = requirePkg('@mapbox/node-pre-gyp') as { find(packageJsonPath: string): string };
    binding = preGyp.find(pkgJson);
  } catch (e) {
    return { ok: false, pkg, reason: `cannot locate its native addon (${firstLine(e)})` };
  }
  if (!existsSync(binding)) return { ok: false, pkg, reason: `native addon not built (${HOW_TO_FIX[pkg]})` };
  try {
    requirePkg(binding);
  } catch (e) {
    return { ok: false, pkg, reason: `native addon does not load: ${firstLine(e)} (${HOW_TO_FIX[pkg]})` };
  }
  return { ok: true, pkg, pkgJson, binding };
}

interface TensorflowBackendLike {
  binding: { TF_Version: string };
  isUsingGpuDevice: boolean;
}

let nativeState: NativeState | undefined;
const nativeFailures = new Map<NativePackage, string>();

/**
 * NOTE: tfjs-node 4.22 calls `util.isNullOrUndefined`, which Node 23 removed, and `util.isArray`, which warns
 * (DEP0044) on every Node since 22; without the first its kernels throw "isNullOrUndefined is not a function" on
 * Node 24. Put both back with their documented meaning before the package loads.
 */
function restoreRemovedUtil(): void {
  const u = util as unknown as Record<string, unknown>;
  u.isNullOrUndefined ??= (v: unknown) => v === null || v === undefined;
  u.isArray = Array.isArray;
}

/**
 * Loads the best native package once per process (a second package cannot be loaded next to the first:
 * both register the `tensorflow` kernels and libtensorflow_framework.so.2).
 */
function loadNative(): NativeState {
  if (nativeState) return nativeState;
  // libtensorflow logs at load (CPU features, missing CUDA libraries): keep them out unless asked for.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // NOTE: oneDNN's custom ops are what run bf16 matmuls and convolutions fast (runtime/bf16.ts: without them bf16
  // falls back to Eigen, slower than float32), and they speed float32 matmuls up too. TF announces them on stderr
  // through absl (two lines that TF_CPP_MIN_LOG_LEVEL does not silence). Set TF_ENABLE_ONEDNN_OPTS=0 to turn them off.
  process.env.TF_ENABLE_ONEDNN_OPTS ??= '1';
  restoreRemovedUtil();
  for (const pkg of NATIVE_PACKAGES) {
    const probe = probeNative(pkg);
    if (!probe.ok) {
      nativeFailures.set(pkg, probe.reason);
      continue;
    }
    const previous = selectedBackendName();
    try {
      createRequire(probe.pkgJson)(pkg); // registers and selects 'tensorflow' in the shared tfjs-core engine
      const backend = tf.findBackend('tensorflow') as unknown as TensorflowBackendLike | null;
      if (!backend) throw new Error('the package loaded but no "tensorflow" backend is registered in @tensorflow/tfjs-core (two copies of tfjs-core?)');
      nativeState = { ok: true, pkg, tensorflowVersion: String(backend.binding.TF_Version), usingGpu: Boolean(backend.isUsingGpuDevice) };
      // One op at once: a process (or thread) that loaded TensorFlow and exits without having run any op crashes
      // with SIGSEGV at exit (TF 2.21 via tfjs-node), turning a clean early error (a port in use) into exit 139.
      tf.tidy(() => {
        tf.add(tf.scalar(1), tf.scalar(1)).dataSync();
      });
    } catch (e) {
      nativeFailures.set(pkg, `failed to load: ${firstLine(e)}`);
      nativeState = { ok: false, pkg, reason: `failed to load: ${firstLine(e)}` };
    }
    if (previous && previous !== 'tensorflow') void tf.setBackend(previous); // loading selects 'tensorflow'; the caller decides
    return nativeState;
  }
  nativeState = { ok: false, pkg: '@tensorflow/tfjs-node', reason: nativeFailures.get('@tensorflow/tfjs-node') ?? 'unavailable' };
  return nativeState;
}

/** The selected backend's name, without making tfjs-core pick (and initialize) one when none is selected. */
function selectedBackendName(): string | undefined {
  const engine = tf.engine() as unknown as { backendInstance: unknown; backendName: string };
  return engine.backendInstance != null ? engine.backendName : undefined;
}

function summarize(unavailable: Unavailable[]): string {
  return unavailable.map((u) => `${u.candidate.replace(/^tensorflow \((.*)\)$/, '$1')}: ${u.reason}`).join('; ');
}

function nativeUnavailable(): Unavailable[] {
  return NATIVE_PACKAGES.filter((p) => nativeFailures.has(p)).map((p) => ({
    candidate: `tensorflow (${p})`,
    reason: nativeFailures.get(p)!,
  }));
}

// ---------------------------------------------------------------------------------------------------
// wasm and cpu

let wasmPathsSet = false;
function prepareWasm(): void {
  if (wasmPathsSet) return;
  wasmPathsSet = true;
  // Point the wasm loader at the package's dist folder explicitly (its own guess depends on how the
  // bundle was loaded: tsx, vitest and plain node differ).
  try {
    const dist = dirname(requireHere.resolve('@tensorflow/tfjs-backend-wasm'));
    if (existsSync(join(dist, 'tfjs-backend-wasm.wasm'))) setWasmPaths(dist + '/');
  } catch {
    // keep the package's default
  }
}

/**
 * The JS backend prints an "install our node backend" banner on its first use in Node; the fallback
 * line covers that. Creating its instance (cheap) lets us clear the flag even when code switches to
 * it with tf.setBackend('cpu') directly, as the backend-agreement test does.
 */
function quietCpuBanner(): void {
  const cpu = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
}
quietCpuBanner();

async function activate(name: BackendName): Promise<void> {
  if (name === 'wasm') prepareWasm();
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new BackendError(`the ${name} backend failed to initialize: ${firstLine(e)}`, { cause: e });
  }
  if (!ok) throw new BackendError(`the ${name} backend failed to initialize.`);
  await tf.ready();
}

async function wasmDevice(): Promise<string> {
  let simd = false;
  try {
    simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  } catch {
    // flag unknown: leave it out
  }
  return `WebAssembly${simd ? ' SIMD' : ''}, 1 thread`;
}

function packageVersion(pkg: string): string | undefined {
  try {
    return (requireHere(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------

let current: BackendInfo | undefined;

/**
 * Selects the backend (once per process for a given request; later calls return the same info and
 * re-select it if something switched away). Prints one line to stderr when auto had to fall back or
 * the GPU package runs on CPU, unless `quiet`.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const requested =
    opts.backend !== undefined
      ? parseBackendChoice(opts.backend, '--backend')
      : parseBackendChoice(process.env.FLUX_BACKEND, 'FLUX_BACKEND');
  if (current && current.requested === requested) {
    if (tf.getBackend() !== current.name) await activate(current.name);
    return current;
  }
  const info = await select(requested);
  current = info;
  if (info.reason && !opts.quiet) (opts.log ?? ((l) => process.stderr.write(l + '\n')))(fallbackLine(info));
  return info;
}

/**
 * What the pipeline calls on first use: `initBackend()` (FLUX_BACKEND, else auto) unless a backend was already
 * chosen, by initBackend or by `tf.setBackend` directly; so a library user who never calls initBackend gets the
 * best backend instead of tfjs' silent JavaScript fallback.
 */
export async function ensureBackend(): Promise<void> {
  if (current || selectedBackendName() !== undefined) return;
  await initBackend();
}

/** The backend chosen by the last initBackend() call, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/** The one line printed on a fallback. */
export function fallbackLine(info: BackendInfo): string {
  return `flux: using the ${info.name} backend (${describe(info)}); ${info.reason ?? 'nothing better is available'}`;
}

function describe(info: BackendInfo): string {
  if (info.name === 'tensorflow') return `${info.device}, TensorFlow ${info.tensorflowVersion} via ${info.package}`;
  return info.device;
}

/** What the native probe found, as input to decideBackend(). */
export interface NativeStatus {
  /** The package that loaded, if one did. */
  loaded?: { pkg: NativePackage; tensorflowVersion: string; usingGpu: boolean };
  /** Packages that could not be used, best first. */
  failures: Unavailable[];
}

export interface BackendDecision {
  name: BackendName;
  package: string;
  device?: string;
  reason?: string;
  unavailable: Unavailable[];
}

const GPU_MISSING =
  'TensorFlow found no GPU device, so @tensorflow/tfjs-node-gpu runs on the CPU ' +
  '(the CUDA 11.2 / cuDNN 8.1 libraries are not on the library path, or there is no NVIDIA GPU; see the README)';

/**
 * The selection rule, without side effects: which backend a request gets given what the native
 * probe found, and the reason line when a better backend is not in use. Throws BackendError when a
 * forced backend is unavailable.
 */
export function decideBackend(requested: BackendChoice, native: NativeStatus): BackendDecision {
  if (requested === 'auto' || requested === 'tensorflow') {
    const loaded = native.loaded;
    if (loaded) {
      const unavailable = [...native.failures];
      let reason: string | undefined;
      if (loaded.pkg === '@tensorflow/tfjs-node-gpu' && !loaded.usingGpu) {
        reason = GPU_MISSING;
        unavailable.unshift({ candidate: 'tensorflow (@tensorflow/tfjs-node-gpu) on GPU', reason: 'TensorFlow found no GPU device' });
      } else if (requested === 'auto' && unavailable.length > 0) {
        reason = `no GPU: ${summarize(unavailable)}`;
      }
      return { name: 'tensorflow', package: loaded.pkg, device: loaded.usingGpu ? 'GPU' : 'CPU', reason, unavailable };
    }
    if (requested === 'tensorflow') {
      throw new BackendError(
        `the tensorflow backend is not available: ${summarize(native.failures) || 'no native package found'}. ` +
          'Use --backend wasm (or auto) to run without it.',
      );
    }
    return {
      name: 'wasm',
      package: '@tensorflow/tfjs-backend-wasm',
      reason: `native TensorFlow is unavailable: ${summarize(native.failures)}`,
      unavailable: [...native.failures],
    };
  }
  if (requested === 'wasm') return { name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', unavailable: [] };
  return { name: 'cpu', package: '@tensorflow/tfjs-backend-cpu', device: 'JavaScript', unavailable: [] };
}

function nativeStatus(): NativeStatus {
  const state = loadNative();
  return {
    loaded: state.ok ? { pkg: state.pkg, tensorflowVersion: state.tensorflowVersion, usingGpu: state.usingGpu } : undefined,
    failures: nativeUnavailable(),
  };
}

async function select(requested: BackendChoice): Promise<BackendInfo> {
  const native = requested === 'auto' || requested === 'tensorflow' ? nativeStatus() : { failures: [] };
  const decision = decideBackend(requested, native);
  const base = { requested, tfjsVersion: tf.version_core };
  try {
    await activate(decision.name);
  } catch (e) {
    if (requested !== 'auto' || decision.name !== 'wasm') throw e;
    // Last resort: wasm should always load, but if it does not, auto still runs (slowly).
    const unavailable = [...decision.unavailable, { candidate: 'wasm', reason: firstLine(e) }];
    await activate('cpu');
    return {
      ...base,
      name: 'cpu',
      device: 'JavaScript',
      package: '@tensorflow/tfjs-backend-cpu',
      reason: `neither native TensorFlow nor wasm is available (${summarize(unavailable)}); the JavaScript backend is very slow`,
      unavailable,
    };
  }
  return {
    ...base,
    name: decision.name,
    device: decision.device ?? (decision.name === 'wasm' ? await wasmDevice() : 'JavaScript'),
    package: decision.package,
    reason: decision.reason,
    tensorflowVersion: native.loaded?.tensorflowVersion,
    unavailable: decision.unavailable,
  };
}

/**
 * Availability of every candidate, for `pnpm flux backend` (loads the native package if it can).
 * Does not change the selected backend.
 */
export async function listBackends(): Promise<{ candidate: string; package: string; version?: string; available: boolean; detail: string }[]> {
  const before = selectedBackendName();
  const native = loadNative();
  const rows: { candidate: string; package: string; version?: string; available: boolean; detail: string }[] = [];
  for (const pkg of NATIVE_PACKAGES) {
    const failure = nativeFailures.get(pkg);
    const loaded = native.ok && native.pkg === pkg;
    rows.push({
      candidate: 'tensorflow',
      package: pkg,
      version: packageVersion(pkg),
      available: loaded,
      detail: loaded
        ? `TensorFlow ${native.tensorflowVersion} on ${native.usingGpu ? 'GPU' : pkg === '@tensorflow/tfjs-node-gpu' ? 'CPU (TensorFlow found no GPU device)' : 'CPU'}`
        : failure ?? (native.ok ? `not loaded (${native.pkg} is in use)` : 'unavailable'),
    });
  }
  rows.push({ candidate: 'wasm', package: '@tensorflow/tfjs-backend-wasm', version: packageVersion('@tensorflow/tfjs-backend-wasm'), available: true, detail: 'always installed; single-threaded in Node' });
  rows.push({ candidate: 'cpu', package: '@tensorflow/tfjs-backend-cpu', version: packageVersion('@tensorflow/tfjs-backend-cpu'), available: true, detail: 'pure JavaScript, for debugging only' });
  if (before && tf.getBackend() !== before) await tf.setBackend(before);
  return rows;
}

/**
 * Whether `tf.tensor(typedArray)` on the current backend copies the values at once, so the array may be reused
 * right after: wasm copies into its heap. tfjs-node does not: it wraps a large (aligned) array's own memory in
 * the TensorFlow tensor (TF_NewTensor, tfjs_backend.cc), and cpu keeps the array itself.
 */
export function uploadCopies(): boolean {
  return tf.getBackend() === 'wasm';
}
