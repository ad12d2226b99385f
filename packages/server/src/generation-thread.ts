/**
 * The generation thread (one per loaded model): runs a `Generator` off the HTTP thread, so the server keeps
 * answering /healthz, status, cancel, 429s and server-sent events while a job computes. Started by
 * `ThreadedGenerator`; the messages are `ThreadRequest` in, `ThreadReply` out (threaded-generator.ts).
 *
 * The generator comes from a factory module: `workerData.module` exports `createGenerator(args)` (the real one is
 * generator.ts's, which initialises the tensor backend in this thread and opens the pipeline).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FluxError } from '@flux-ts/core';
import type { Generator } from './generator.ts';
import { serializeError, type ThreadInit, type ThreadReply, type ThreadRequest } from './threaded-generator.ts';

const port = parentPort!;
const post = (m: ThreadReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const { module, args } = workerData as ThreadInit;

let generator: Generator;
try {
  const factory = (await import(module)) as { createGenerator(args: unknown): Promise<Generator> };
  generator = await factory.createGenerator(args);
  post({ type: 'ready', variant: generator.variant });
} catch (e) {
  post({ type: 'init-failed', error: serializeError(e) });
  process.exit(1);
}

const running = new Map<string, AbortController>();

port.on('message', (m: ThreadRequest) => {
  if (m.type === 'generate') {
    const controller = new AbortController();
    running.set(m.id, controller);
    generator
      .generate(m.input, {
        signal: controller.signal,
        onStep: (p) => post({ type: 'step', id: m.id, step: p.step, total: p.total }),
        onPreview: (p) => {
          const png = new Uint8Array(p.png);
          post({ type: 'preview', id: m.id, step: p.step, total: p.total, png }, [png.buffer as ArrayBuffer]);
        },
      })
      .then(
        (output) => {
          // Copy each PNG into its own buffer, then hand the buffers over without a second copy.
          const pngs = output.pngs.map((p) => new Uint8Array(p));
          post({ type: 'done', id: m.id, output: { ...output, pngs } }, pngs.map((p) => p.buffer as ArrayBuffer));
        },
        (e: unknown) => post({ type: 'failed', id: m.id, error: serializeError(e) }),
      )
      .finally(() => running.delete(m.id));
  } else if (m.type === 'abort') {
    running.get(m.id)?.abort(new FluxError('aborted', m.reason));
  } else if (m.type === 'memory') {
    void Promise.resolve(generator.memory?.()).then((memory) => post({ type: 'memory', memory: memory ?? null }));
  } else if (m.type === 'close') {
    void Promise.resolve(generator.close?.()).finally(() => process.exit(0)); // ends this thread only
  }
});
