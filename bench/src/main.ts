/**
 * `pnpm bench <name> [--backend B] [options]`: benchmarks. They print a table and write JSON under
 * bench/results/; they are never run as tests. Each benchmark is a module in this folder exporting `run(argv)`.
 */
import { isFluxError } from '@flux-ts/core';

const BENCHES: Record<string, { summary: string; load: () => Promise<{ run(argv: string[]): Promise<void> }> }> = {
  transformer: { summary: 'one double + one single block at full width, 256²/512²/1024²', load: () => import('./transformer.ts') },
  'text-encoders': { summary: 'one full-size T5-XXL layer and CLIP-L at 256 / 77 tokens', load: () => import('./text-encoders.ts') },
  pipeline: { summary: 'generate() end to end: the tiny model, or --full-sparse full-size FLUX.1 (memory figure)', load: () => import('./pipeline.ts') },
  stream: { summary: 'one step of streaming the full-size transformer weights, without the compute', load: () => import('./stream.ts') },
  vae: { summary: 'full-size VAE decoder at 512² and 1024²', load: () => import('./vae.ts') },
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  const bench = name ? BENCHES[name] : undefined;
  if (!bench) {
    console.log('usage: pnpm bench <name> [--backend tensorflow|wasm|cpu] [options]\n\nbenchmarks:');
    for (const [n, b] of Object.entries(BENCHES)) console.log(`  ${n.padEnd(14)} ${b.summary}`);
    process.exitCode = name ? 1 : 0;
    return;
  }
  await (await bench.load()).run(rest);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(isFluxError(err) ? `error: ${err.message}` : err);
  process.exitCode = 1;
});
