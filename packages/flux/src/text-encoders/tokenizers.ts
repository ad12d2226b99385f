/**
 * FLUX's two tokenizers from a diffusers-layout model folder (`tokenizer/` CLIP BPE, `tokenizer_2/` T5 unigram), as
 * the one loader the pipeline, the server and `pnpm flux tokenize` use, with the T5 sequence length of the model's
 * variant: 256 for schnell, 512 for dev (guidance-distilled), as the diffusers pipelines use.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadClipTokenizer } from '../clip/load-tokenizer.ts';
import type { CLIPTokenizer } from '../clip/tokenizer.ts';
import { isFile, readJson } from '../shared/files.ts';
import { loadT5Tokenizer } from '../t5/load-tokenizer.ts';
import type { T5Tokenizer } from '../t5/tokenizer.ts';
import { listCheckpoints } from '../weights/checkpoint.ts';
import { locateWeights } from '../weights/detect.ts';
import { TokenizerError } from './tokenizer-common.ts';

export { TokenizerError, type TokenizedPrompt, type AddedToken } from './tokenizer-common.ts';

/**
 * The T5 length of the model in `modelDir`: its variant from the transformer's header (a guidance embedder means
 * dev), else from transformer/config.json (`guidance_embeds`) when the folder has no weights, else schnell's.
 */
export function t5LengthOf(modelDir: string): { length: number; reason: string } {
  const dir = path.join(modelDir, 'transformer');
  const of = (dev: boolean, why: string) => (dev ? { length: 512, reason: `${why} (FLUX.1 [dev])` } : { length: 256, reason: `${why} (FLUX.1 [schnell])` });
  if (existsSync(dir) && listCheckpoints(dir).length > 0) {
    const { location } = locateWeights(dir, 'transformer');
    return of(location.variant === 'dev', `the transformer weights ${location.variant === 'dev' ? 'have' : 'lack'} a guidance embedder`);
  }
  const cfg = path.join(dir, 'config.json');
  if (isFile(cfg)) {
    const c = readJson(cfg, 're-download it');
    if (typeof c.guidance_embeds === 'boolean') return of(c.guidance_embeds, `transformer/config.json has guidance_embeds: ${c.guidance_embeds}`);
  }
  return { length: 256, reason: 'default for FLUX.1 [schnell] (no transformer weights or config in the folder)' };
}

export interface FluxTokenizers {
  clip: CLIPTokenizer;
  t5: T5Tokenizer;
  t5Length: number;
  t5LengthReason: string;
}

/** Both tokenizers of a diffusers-layout FLUX.1 folder (tokenizer/, tokenizer_2/). */
export async function loadTokenizers(modelDir: string, opts: { t5Length?: number } = {}): Promise<FluxTokenizers> {
  if (!existsSync(modelDir)) throw new TokenizerError(`model folder ${modelDir} does not exist`);
  const clipDir = path.join(modelDir, 'tokenizer');
  const t5Dir = path.join(modelDir, 'tokenizer_2');
  if (!existsSync(clipDir)) {
    throw new TokenizerError(`${modelDir} has no tokenizer/ folder; expected tokenizer/vocab.json and tokenizer/merges.txt (diffusers layout)`);
  }
  if (!existsSync(t5Dir)) {
    throw new TokenizerError(`${modelDir} has no tokenizer_2/ folder; expected tokenizer_2/tokenizer.json or tokenizer_2/spiece.model (diffusers layout)`);
  }
  let t5Length: number;
  let t5LengthReason: string;
  if (opts.t5Length !== undefined) {
    if (!Number.isInteger(opts.t5Length) || opts.t5Length < 1 || opts.t5Length > 512) {
      throw new TokenizerError(`T5 length must be an integer in 1..512, got ${opts.t5Length}`);
    }
    t5Length = opts.t5Length;
    t5LengthReason = 'set by the caller';
  } else {
    ({ length: t5Length, reason: t5LengthReason } = t5LengthOf(modelDir));
  }
  const [clip, t5] = await Promise.all([loadClipTokenizer(clipDir), loadT5Tokenizer(t5Dir, t5Length)]);
  return { clip, t5, t5Length, t5LengthReason };
}
