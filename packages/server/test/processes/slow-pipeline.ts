/**
 * A generator factory module for ThreadedGenerator.fromModule: the real tiny pipeline (generator.ts), each step
 * followed by `stepDelayMs` of blocking on its own thread, so a test can kill a process mid-job. Test-only: production
 * code has no delay knob.
 */
import { createGenerator as createPipelineGenerator, type Generator } from '../../src/generator.ts';

export async function createGenerator(args: { model: string; stepDelayMs: number; backend?: string }): Promise<Generator> {
  const inner = await createPipelineGenerator({ model: args.model, backend: args.backend });
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  return {
    variant: inner.variant,
    generate: (input, opts) =>
      inner.generate(input, {
        signal: opts.signal,
        onStep: (p) => {
          opts.onStep(p);
          Atomics.wait(sleeper, 0, 0, args.stepDelayMs); // this thread only: the process's main thread stays live
        },
      }),
    close: () => inner.close?.() ?? Promise.resolve(),
    memory: () => inner.memory?.() ?? Promise.resolve(null),
  };
}
