/**
 * The proj preview's latent -> RGB map for a model's VAE (src/pipeline/latent-rgb.ts), with its fit quality on the
 * images it was fitted on and on others: what the pipeline computes on first use, printed so it can be checked
 * against a model's own decoder (or pasted into `PipelineOptions.latentRgb` to skip the fit).
 *
 *   pnpm exec tsx packages/flux/scripts/fit-latent-rgb.ts MODEL [--images 8] [--size 64] [--backend B]
 */
import { parseArgs } from 'node:util';
import { evaluateLatentRgb, fitLatentRgb, initBackend, loadAutoEncoder, locateModel } from '../src/index.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { images: { type: 'string', default: '8' }, size: { type: 'string', default: '64' }, backend: { type: 'string' } },
});
if (positionals.length !== 1) {
  console.error('usage: pnpm exec tsx packages/flux/scripts/fit-latent-rgb.ts MODEL [--images 8] [--size 64] [--backend B]');
  process.exit(2);
}
await initBackend({ backend: values.backend });
const vae = (await loadAutoEncoder(locateModel({ model: positionals[0] }).vae)).ae;
const opts = { images: Number(values.images), size: Number(values.size) };
const fit = fitLatentRgb(vae, opts);
const held = evaluateLatentRgb(vae, fit.projection, opts);
const f = (x: number) => x.toFixed(4);
console.log(`fit on ${fit.samples} latent cells: R^2 r ${f(fit.r2[0])} g ${f(fit.r2[1])} b ${f(fit.r2[2])}, RMSE ${f(fit.rmse)}`);
console.log(`held out (${held.samples} cells): R^2 r ${f(held.r2[0])} g ${f(held.r2[1])} b ${f(held.r2[2])}, RMSE ${f(held.rmse)}`);
console.log(JSON.stringify({ weights: fit.projection.weights.map((r) => r.map((v) => Number(v.toFixed(5)))), bias: fit.projection.bias.map((v) => Number(v.toFixed(5))) }));
vae.dispose();
