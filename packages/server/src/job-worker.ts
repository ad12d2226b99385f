/**
 * The job worker: one job -> the DeepInfra response body. The in-process queue calls it in the server's process;
 * `flux worker` processes call it for jobs on the shared Redis queue. It knows nothing of HTTP (a worker process
 * never loads the server).
 */
import { FluxError } from '@flux-ts/core';
import type { GenerationPreview, Generator } from './generator.ts';
import type { JobResult, Worker } from './job-queue.ts';
import { MODEL_IDS } from './model-ids.ts';
import { dataUri } from './responses.ts';

export function createJobWorker(
  generatorList: readonly Generator[],
  opts: { costPerImage?: number; log?: { error(obj: unknown, msg: string): void } } = {},
): Worker {
  const generators = new Map<string, Generator>();
  for (const g of generatorList) generators.set(MODEL_IDS[g.variant], g);
  const costPerImage = opts.costPerImage ?? 0;
  return async (id, data, ctx) => {
    const gen = generators.get(data.model);
    if (!gen) throw new FluxError('model_not_found', `no model serves ${data.model}; load it with --model`);
    const t0 = performance.now();
    try {
      const out = await gen.generate(
        { request: data.request, image: data.image },
        {
          signal: ctx.signal,
          onStep: (p) => ctx.progress(p.step, p.total),
          ...(ctx.preview ? { onPreview: (p: GenerationPreview) => ctx.preview!(p.step, p.total, dataUri(p.png)) } : {}),
        },
      );
      const runtimeMs = Math.round(performance.now() - t0);
      return {
        images: out.pngs.map(dataUri),
        nsfw_content_detected: out.pngs.map(() => false),
        seed: out.seed,
        request_id: id,
        inference_status: {
          status: 'succeeded',
          runtime_ms: runtimeMs,
          cost: costPerImage * out.pngs.length,
          tokens_generated: 0,
          tokens_input: out.tokensInput,
        },
      } satisfies JobResult;
    } catch (e) {
      if (!(e instanceof FluxError)) opts.log?.error({ reqId: id, err: e }, 'generation failed');
      throw e;
    }
  };
}
