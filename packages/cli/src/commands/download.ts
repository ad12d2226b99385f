/**
 * `pnpm flux download [REPO] [--revision R] [--dir D] [--include G]... [--exclude G]...`: fetch the files a FLUX
 * pipeline needs from the Hugging Face hub into the HF cache (or a plain folder), resumably. Progress goes to
 * stderr; stdout gets one line, the folder to load the model from.
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';

import { createProgressReporter, DEFAULT_REPO, downloadRepo, formatBytes, hfCacheDir, hubEndpoint } from '@flux-ts/flux';

const USAGE = `usage: pnpm flux download [REPO] [--revision R] [--dir D] [--include GLOB]... [--exclude GLOB]...

Downloads the files a FLUX pipeline needs from the Hugging Face hub (REPO defaults to ${DEFAULT_REPO}):
for a diffusers-layout repo model_index.json, scheduler/, text_encoder/, text_encoder_2/, tokenizer/,
tokenizer_2/, transformer/ and vae/ (safetensors only; the single-file flux1-*.safetensors / ae.safetensors
duplicates are skipped unless --include asks for them). Files land in the HF cache shared with huggingface_hub
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), or in a plain folder with --dir.
Interrupted downloads resume; files already present are skipped; every file is checked against its hash.

options:
  --revision R      branch, tag or commit sha (default main)
  --dir D           plain folder layout in D instead of the HF cache
  --include GLOB    also fetch matching files (repeatable; fnmatch globs, e.g. 'flux1-schnell.safetensors', '*')
  --exclude GLOB    never fetch matching files (repeatable, e.g. 'text_encoder_2/*')
  --cache-dir C     HF cache folder (default ${'$'}HF_HUB_CACHE or ~/.cache/huggingface/hub)
  --dry-run         list what would be downloaded, write nothing
  --quiet           no progress output
  -h, --help        show this help

environment:
  HF_TOKEN          access token for gated repositories (accept the license on the repo page first)
  HF_ENDPOINT       hub URL (default https://huggingface.co), e.g. a mirror`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        revision: { type: 'string', default: 'main' },
        dir: { type: 'string' },
        include: { type: 'string', multiple: true, default: [] },
        exclude: { type: 'string', multiple: true, default: [] },
        'cache-dir': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : e}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) {
    throw new FluxError('INVALID_ARGUMENT', `download takes at most one REPO, got ${positionals.length}\n\n${USAGE}`);
  }
  const progress = values.quiet ? null : createProgressReporter({ stream: process.stderr });
  try {
    const result = await downloadRepo({
      repo: positionals[0] ?? DEFAULT_REPO,
      revision: values.revision,
      localDir: values.dir,
      cacheDir: values['cache-dir'] ?? hfCacheDir(),
      endpoint: hubEndpoint(),
      include: values.include,
      exclude: values.exclude,
      dryRun: values['dry-run'],
      onEvent: progress?.onEvent,
    });
    progress?.end();
    if (values['dry-run']) {
      for (const f of result.files) console.log(`${f.status === 'cached' ? 'present ' : 'download'}  ${formatBytes(f.size).padStart(9)}  ${f.path}`);
      return 0;
    }
    if (!values.quiet) {
      const fetched = result.files.filter((f) => f.status === 'downloaded').length;
      process.stderr.write(`${fetched ? `downloaded ${fetched} file(s), ${formatBytes(result.downloadedBytes)}` : 'everything was already present'}; model folder:\n`);
    }
    console.log(result.path);
    return 0;
  } catch (e) {
    progress?.end();
    throw e;
  }
}
