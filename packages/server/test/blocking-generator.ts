/**
 * A generator whose steps block their thread (a busy loop, as a real transformer step does for seconds), for the
 * tests that the HTTP thread keeps answering while a job computes. Also the factory module a ThreadedGenerator
 * loads (`createGenerator`). Between steps it yields once, so an abort message can arrive, as the pipeline does.
 */
import { FluxError } from '@flux-ts/core';
import { encodePng } from '@flux-ts/flux';
import type { GenerationInput, GenerationOutput, Generator } from '../src/generator.ts';

export class BlockingGenerator implements Generator {
  readonly variant = 'schnell' as const;
  readonly stepMs: number;
  constructor(stepMs: number) {
    this.stepMs = stepMs;
  }
  async generate(input: GenerationInput, opts: { signal: AbortSignal; onStep: (p: { step: number; total: number }) => void }): Promise<GenerationOutput> {
    const total = input.request.num_inference_steps;
    for (let i = 0; i < total; i++) {
      await new Promise((r) => setImmediate(r));
      if (opts.signal.aborted) throw new FluxError('aborted', `generation aborted after ${i} of ${total} steps`);
      const until = performance.now() + this.stepMs;
      while (performance.now() < until) {
        // blocks this thread, like a long synchronous step
      }
      opts.onStep({ step: i + 1, total });
    }
    const png = encodePng({ width: 1, height: 1, data: new Uint8Array([1, 2, 3]) });
    return { pngs: Array.from({ length: input.request.num_images }, () => png), seed: input.request.seed, tokensInput: 1 };
  }
}

export async function createGenerator(args: { stepMs: number }): Promise<Generator> {
  return new BlockingGenerator(args.stepMs);
}
