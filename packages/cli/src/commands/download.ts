/**
 * `pnpm flux download [REPO] [--revision R] [--dir D] [--include G]... [--exclude G]...`: fetch the files a FLUX
 * pipeline needs from the Hugging Face hub into the HF cache (or a plain folder), resumably. Progress goes to
 * stderr; stdout gets one line, the folder to load the model from.
 */
import type { CommandSpec } from '../command.ts';
import { flag, str } from '../options.ts';
import { createProgressReporter, DEFAULT_REPO, downloadRepo, formatBytes, hfCacheDir, hubEndpoint } from '@flux-ts/flux';

export const command: CommandSpec = {
  name: 'download',
  usage: '[REPO] [--revision R] [--dir D] [--include GLOB]... [--exclude GLOB]...',
  description: `Downloads the files a FLUX pipeline needs from the Hugging Face hub (REPO defaults to ${DEFAULT_REPO}): for a diffusers-layout repo model_index.json, scheduler/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, transformer/ and vae/ (safetensors only; the single-file flux1-*.safetensors / ae.safetensors duplicates are skipped unless --include asks for them). Files land in the HF cache shared with huggingface_hub (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), or in a plain folder with --dir. Interrupted downloads resume; files already present are skipped; every file is checked against its hash.`,
  positionals: { max: 1, name: 'REPO' },
  groups: [
    {
      title: 'what and where',
      options: [
        { name: 'revision', type: 'string', arg: 'R', help: 'branch, tag or commit sha (default main)' },
        { name: 'dir', type: 'string', arg: 'D', help: 'plain folder layout in D instead of the HF cache' },
        { name: 'include', type: 'string', arg: 'GLOB', multiple: true, help: "also fetch matching files (repeatable; fnmatch globs, e.g. 'flux1-schnell.safetensors', '*')" },
        { name: 'exclude', type: 'string', arg: 'GLOB', multiple: true, help: "never fetch matching files (repeatable, e.g. 'text_encoder_2/*')" },
        { name: 'cache-dir', type: 'string', arg: 'C', help: 'HF cache folder (default $HF_HUB_CACHE or ~/.cache/huggingface/hub)' },
        { name: 'dry-run', type: 'boolean', help: 'list what would be downloaded, write nothing' },
      ],
    },
    { title: 'output', options: [{ name: 'quiet', short: 'q', type: 'boolean', help: 'no progress output' }] },
  ],
  epilog: `environment:
  HF_TOKEN          access token for gated repositories (accept the license on the repo page first)
  HF_ENDPOINT       hub URL (default https://huggingface.co), e.g. a mirror`,
  async run(args) {
    const quiet = flag(args, 'quiet');
    const dryRun = flag(args, 'dry-run');
    const progress = quiet ? null : createProgressReporter({ stream: process.stderr });
    try {
      const result = await downloadRepo({
        repo: args.positionals[0] ?? DEFAULT_REPO,
        revision: str(args, 'revision') ?? 'main',
        localDir: str(args, 'dir'),
        cacheDir: str(args, 'cache-dir') ?? hfCacheDir(),
        endpoint: hubEndpoint(),
        include: (args.values.include as string[] | undefined) ?? [],
        exclude: (args.values.exclude as string[] | undefined) ?? [],
        dryRun,
        onEvent: progress?.onEvent,
      });
      progress?.end();
      if (dryRun) {
        for (const f of result.files) console.log(`${f.status === 'cached' ? 'present ' : 'download'}  ${formatBytes(f.size).padStart(9)}  ${f.path}`);
        return 0;
      }
      if (!quiet) {
        const fetched = result.files.filter((f) => f.status === 'downloaded').length;
        process.stderr.write(`${fetched ? `downloaded ${fetched} file(s), ${formatBytes(result.downloadedBytes)}` : 'everything was already present'}; model folder:\n`);
      }
      console.log(result.path);
      return 0;
    } catch (e) {
      progress?.end();
      throw e;
    }
  },
};
