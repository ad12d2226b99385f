/**
 * Loading the CLIP tokenizer from its folder (FLUX's `tokenizer/`): vocab.json + merges.txt (+ tokenizer_config.json
 * for the added-token flags), or a tokenizers-format tokenizer.json (BPE model).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { TokenizerError, tokenizerError, type AddedToken } from '../text-encoders/tokenizer-common.ts';
import { readJson } from '../shared/files.ts';
import { CLIPTokenizer, CLIP_BOS, CLIP_EOS } from './tokenizer.ts';

/**
 * CLIP tokenizer from a folder holding vocab.json and merges.txt (FLUX's `tokenizer/`), or, when those are
 * absent, a tokenizers-format tokenizer.json (BPE model) as newer transformers versions save it.
 */
export async function loadClipTokenizer(dir: string, maxLength = 77): Promise<CLIPTokenizer> {
  const vocabFile = path.join(dir, 'vocab.json');
  const mergesFile = path.join(dir, 'merges.txt');
  const jsonFile = path.join(dir, 'tokenizer.json');
  const missing = [vocabFile, mergesFile].filter((f) => !existsSync(f));
  let vocab: unknown;
  let merges: string[];
  let fileAdded: AddedToken[] = [];
  if (missing.length > 0 && existsSync(jsonFile)) {
    const tj = (readJson(jsonFile, 're-download it', tokenizerError)) as {
      model?: { type?: string; vocab?: unknown; merges?: (string | [string, string])[] };
      added_tokens?: { id: number; content: string; normalized?: boolean }[];
    };
    if (tj.model?.type !== 'BPE' || !Array.isArray(tj.model.merges)) {
      throw new TokenizerError(`${jsonFile} does not hold a BPE model (found ${tj.model?.type ?? 'none'}); CLIP needs its byte-level BPE tokenizer`);
    }
    vocab = tj.model.vocab;
    merges = tj.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
    fileAdded = (tj.added_tokens ?? []).map((t) => ({ content: t.content, id: t.id, normalized: t.normalized === true }));
  } else {
    if (missing.length > 0) {
      throw new TokenizerError(
        `CLIP tokenizer folder ${dir} lacks ${missing.map((f) => path.basename(f)).join(' and ')}; ` +
          'expected vocab.json and merges.txt (the tokenizer/ folder of a diffusers FLUX.1 model), or a tokenizer.json',
      );
    }
    vocab = readJson(vocabFile, 're-download it', tokenizerError);
    merges = (await readFile(mergesFile, 'utf8'))
      .split(/\r?\n/)
      .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith('#version')));
  }
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) {
    throw new TokenizerError(`the CLIP vocabulary in ${dir} is not a token -> id object`);
  }
  const v = vocab as Record<string, number>;
  const added: AddedToken[] = [];
  for (const content of [CLIP_BOS, CLIP_EOS]) {
    const id = v[content];
    if (id === undefined) throw new TokenizerError(`the CLIP vocabulary in ${dir} lacks the special token ${content}`);
    added.push({ content, id, normalized: fileAdded.find((t) => t.content === content)?.normalized ?? false });
  }
  // tokenizer_config.json's added_tokens_decoder says which specials are matched after normalization
  const configFile = path.join(dir, 'tokenizer_config.json');
  if (existsSync(configFile)) {
    const cfg = (readJson(configFile, 're-download it', tokenizerError)) as { added_tokens_decoder?: Record<string, { content?: string; normalized?: boolean }> };
    for (const [id, t] of Object.entries(cfg.added_tokens_decoder ?? {})) {
      if (typeof t.content !== 'string') continue;
      const known = added.find((a) => a.content === t.content);
      if (known) known.normalized = t.normalized === true;
      else added.push({ content: t.content, id: Number(id), normalized: t.normalized === true });
    }
  }
  try {
    return new CLIPTokenizer({ vocab: v, merges, addedTokens: added, maxLength });
  } catch (e) {
    throw new TokenizerError(`cannot build the CLIP tokenizer from ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

