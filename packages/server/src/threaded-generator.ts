/**
 * A `Generator` that runs on a worker thread of its own (generation-thread.ts): the model, the tensor backend and
 * every step of a job live there, so the HTTP thread never computes. Steps come back as messages, aborts go in as
 * messages (the pipeline checks them between steps), PNGs come back as transferred buffers.
 *
 * A thread that dies (out of memory, a native crash) fails its job with `generator_crashed`; the next job starts a
 * fresh thread. `close({ force: true })` terminates the thread at once (the server's shutdown deadline).
 */
import type { Worker } from 'node:worker_threads';
import { FluxError, RequestValidationError, type FieldProblem } from '@flux-ts/core';
import type { PipelineOptions } from '@flux-ts/flux';
import type { GenerateCallbacks, GenerationInput, GenerationOutput, GenerationPreview, GenerationProgress, Generator, GeneratorMemory } from './generator.ts';
import { spawnThread } from './thread.ts';

/** What the thread is started with: the factory module (its `createGenerator(args)`) and the arguments. */
export interface ThreadInit {
  module: string;
  args: unknown;
}

export type ThreadRequest =
  | { type: 'generate'; id: string; input: GenerationInput }
  | { type: 'abort'; id: string; reason: string }
  | { type: 'memory' }
  | { type: 'close' };

export type ThreadReply =
  | { type: 'ready'; variant: 'schnell' | 'dev' }
  | { type: 'init-failed'; error: SerializedError }
  | { type: 'step'; id: string; step: number; total: number }
  | { type: 'preview'; id: string; step: number; total: number; png: Uint8Array }
  | { type: 'done'; id: string; output: GenerationOutput }
  | { type: 'failed'; id: string; error: SerializedError }
  | { type: 'memory'; memory: GeneratorMemory | null };

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  fields?: FieldProblem[];
}

/** An error as it crosses the thread boundary: user errors keep their code (and fields), anything else its stack. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof RequestValidationError) return { name: e.name, message: e.message, code: e.code, fields: [...e.fields] };
  if (e instanceof FluxError) return { name: e.name, message: e.message, code: e.code };
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: String(e) };
}

/** The thread's error again: a FluxError (same code, name and message) for user errors, else a plain Error. */
export function deserializeError(s: SerializedError): Error {
  if (s.fields) return new RequestValidationError(s.fields);
  if (s.code !== undefined) return Object.assign(new FluxError(s.code, s.message), { name: s.name });
  return Object.assign(new Error(s.message), { name: s.name, stack: s.stack ?? `${s.name}: ${s.message}` });
}

/** This package's own modules, as source (.ts, in the repository) or built (.js, installed). */
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
/** The real generator's factory (generator.ts `createGenerator`): a FluxPipeline on the chosen backend. */
const PIPELINE_MODULE = new URL(`./generator${EXT}`, import.meta.url);

export interface PipelineThreadArgs {
  model: string;
  /** Pipeline options (residency, tiling...); stages are always kept loaded. */
  options?: PipelineOptions;
  /** Tensor backend for the thread: auto (default), tensorflow, wasm or cpu. */
  backend?: string;
}

interface Pending {
  resolve: (o: GenerationOutput) => void;
  reject: (e: Error) => void;
  onStep: (p: GenerationProgress) => void;
  onPreview?: (p: GenerationPreview) => void;
}

export class ThreadedGenerator implements Generator {
  private readonly init: ThreadInit;
  private worker: Worker | undefined;
  private ready: Promise<'schnell' | 'dev'> | undefined;
  private readonly pending = new Map<string, Pending>();
  private memoryWaiters: ((m: GeneratorMemory | null) => void)[] = [];
  private closed = false;
  private nextId = 0;
  private _variant: 'schnell' | 'dev' = 'schnell';

  private constructor(init: ThreadInit) {
    this.init = init;
  }

  /** Opens a FluxPipeline (`model`: folder, file, repo id) on a thread of its own; resolves once it is verified. */
  static open(model: string, opts: Omit<PipelineThreadArgs, 'model'> = {}): Promise<ThreadedGenerator> {
    return ThreadedGenerator.fromModule(PIPELINE_MODULE, { model, ...opts } satisfies PipelineThreadArgs);
  }

  /** A generator made on its thread by `module`'s exported `createGenerator(args)` (tests use their own). */
  static async fromModule(module: URL, args: unknown): Promise<ThreadedGenerator> {
    const g = new ThreadedGenerator({ module: module.href, args });
    g._variant = await g.start();
    return g;
  }

  get variant(): 'schnell' | 'dev' {
    return this._variant;
  }

  private start(): Promise<'schnell' | 'dev'> {
    this.ready ??= new Promise((resolve, reject) => {
      const worker = spawnThread(new URL(`./generation-thread${EXT}`, import.meta.url), { workerData: this.init });
      this.worker = worker;
      let started = false;
      worker.on('message', (m: ThreadReply) => {
        if (m.type === 'ready') {
          started = true;
          resolve(m.variant);
        } else if (m.type === 'init-failed') {
          reject(deserializeError(m.error));
        } else if (m.type === 'step') {
          this.pending.get(m.id)?.onStep({ step: m.step, total: m.total });
        } else if (m.type === 'preview') {
          this.pending.get(m.id)?.onPreview?.({ step: m.step, total: m.total, png: m.png });
        } else if (m.type === 'done' || m.type === 'failed') {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.type === 'done') p?.resolve(m.output);
          else p?.reject(deserializeError(m.error));
        } else if (m.type === 'memory') {
          for (const w of this.memoryWaiters.splice(0)) w(m.memory);
        }
      });
      worker.on('error', (e) => {
        if (!started) reject(e);
      });
      worker.on('exit', (code) => {
        if (this.worker === worker) {
          this.worker = undefined;
          this.ready = undefined;
        }
        if (!started) reject(new FluxError('generator_crashed', `the generation thread exited (code ${code}) before the model was ready`));
        const why = this.closed ? 'the server is shutting down' : `the generation thread stopped unexpectedly (exit code ${code}); see the server log`;
        for (const p of this.pending.values()) p.reject(new FluxError(this.closed ? 'aborted' : 'generator_crashed', why));
        this.pending.clear();
        for (const w of this.memoryWaiters.splice(0)) w(null);
      });
    });
    return this.ready;
  }

  async generate(input: GenerationInput, opts: GenerateCallbacks): Promise<GenerationOutput> {
    if (this.closed) throw new FluxError('aborted', 'the generator is closed');
    await this.start();
    const worker = this.worker!;
    const id = String(this.nextId++);
    return new Promise<GenerationOutput>((resolve, reject) => {
      const onAbort = () => {
        const reason = opts.signal.reason instanceof Error ? opts.signal.reason.message : 'cancelled';
        worker.postMessage({ type: 'abort', id, reason } satisfies ThreadRequest);
      };
      const settle = () => opts.signal.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (o) => (settle(), resolve(o)),
        reject: (e) => (settle(), reject(e)),
        onStep: opts.onStep,
        ...(opts.onPreview ? { onPreview: opts.onPreview } : {}),
      });
      worker.postMessage({ type: 'generate', id, input } satisfies ThreadRequest);
      if (opts.signal.aborted) onAbort();
      else opts.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The thread's tensor counts (tests check they do not grow between jobs). */
  async memory(): Promise<GeneratorMemory | null> {
    if (!this.worker) return null;
    const answer = new Promise<GeneratorMemory | null>((r) => this.memoryWaiters.push(r));
    this.worker.postMessage({ type: 'memory' } satisfies ThreadRequest);
    return answer;
  }

  async close(opts: { force?: boolean } = {}): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((r) => worker.once('exit', () => r()));
    if (opts.force) {
      await worker.terminate();
      return;
    }
    worker.postMessage({ type: 'close' } satisfies ThreadRequest);
    await exited;
  }
}
