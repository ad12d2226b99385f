/**
 * Loading FLUX's two tokenizers from a diffusers-layout model folder:
 *   tokenizer/    CLIP BPE: vocab.json + merges.txt (+ tokenizer_config.json for the added-token flags)
 *   tokenizer_2/  T5 unigram: tokenizer.json, or spiece.model when that is all there is
 * and the T5 sequence length: 256 for schnell, 512 for dev (guidance-distilled), as the diffusers pipelines use.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { FluxError } from '@flux-ts/core';
import { CLIPTokenizer, CLIP_BOS, CLIP_EOS } from '../clip/tokenizer.ts';
import type { AddedToken } from './tokenizer-common.ts';
import { T5Tokenizer } from '../t5/tokenizer.ts';
import { PrecompiledCharsmap } from '../t5/tokenizer-charsmap.ts';
import { parseSentencePieceModel, PieceType } from '../t5/tokenizer-spiece.ts';

export { CLIPTokenizer } from '../clip/tokenizer.ts';
export { T5Tokenizer } from '../t5/tokenizer.ts';
export type { TokenizedPrompt, AddedToken } from './tokenizer-common.ts';

export class TokenizerError extends FluxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOKENIZER', message, options);
    this.name = 'TokenizerError';
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${file} is not valid JSON (${(e as Error).message}); re-download it`, { cause: e });
  }
}

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
    const tj = (await readJson(jsonFile)) as {
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
    vocab = await readJson(vocabFile);
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
    const cfg = (await readJson(configFile)) as { added_tokens_decoder?: Record<string, { content?: string; normalized?: boolean }> };
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

interface TokenizerJson {
  added_tokens?: { id: number; content: string; normalized?: boolean }[];
  normalizer?: unknown;
  model?: { type?: string; unk_id?: number | null; vocab?: [string, number][]; byte_fallback?: boolean };
}

/** The precompiled_charsmap of a tokenizer.json normalizer (alone or inside a Sequence). */
function findCharsmap(n: unknown): string | null {
  if (typeof n !== 'object' || n === null) return null;
  const o = n as { type?: string; precompiled_charsmap?: string | null; normalizers?: unknown[] };
  if (o.type === 'Precompiled' && typeof o.precompiled_charsmap === 'string') return o.precompiled_charsmap;
  for (const child of o.normalizers ?? []) {
    const hit = findCharsmap(child);
    if (hit) return hit;
  }
  return null;
}

/** T5 tokenizer from a Hugging Face tokenizer.json (Unigram model). */
export async function loadT5TokenizerJson(file: string, maxLength = 256): Promise<T5Tokenizer> {
  const json = (await readJson(file)) as TokenizerJson;
  const model = json.model;
  if (!model || model.type !== 'Unigram' || !Array.isArray(model.vocab)) {
    throw new TokenizerError(`${file} does not hold a Unigram model (found ${model?.type ?? 'none'}); T5 needs its SentencePiece unigram tokenizer`);
  }
  const b64 = findCharsmap(json.normalizer);
  try {
    return new T5Tokenizer({
      vocab: model.vocab,
      unkId: model.unk_id ?? 2,
      charsmap: b64 ? PrecompiledCharsmap.fromBase64(b64) : null,
      addedTokens: (json.added_tokens ?? []).map((t) => ({ content: t.content, id: t.id, normalized: t.normalized === true })),
      maxLength,
    });
  } catch (e) {
    throw new TokenizerError(`cannot build the T5 tokenizer from ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * T5 tokenizer from a SentencePiece spiece.model, as transformers builds it when that is all a folder has:
 * the pieces with their scores, then <extra_id_99> ... <extra_id_0> (extra_ids = 100) appended.
 */
export async function loadT5SentencePiece(file: string, maxLength = 256, extraIds = 100): Promise<T5Tokenizer> {
  let spm;
  try {
    spm = parseSentencePieceModel(new Uint8Array(await readFile(file)));
  } catch (e) {
    throw new TokenizerError(`${file} is not a readable SentencePiece model: ${(e as Error).message}`, { cause: e });
  }
  if (spm.modelType !== 1) throw new TokenizerError(`${file} is not a unigram SentencePiece model (model_type ${spm.modelType})`);
  const vocab: [string, number][] = spm.pieces.map((p) => [p.piece, p.score]);
  const added: AddedToken[] = [];
  spm.pieces.forEach((p, id) => {
    if (p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN) added.push({ content: p.piece, id, normalized: false });
  });
  for (let i = extraIds - 1; i >= 0; i--) {
    const content = `<extra_id_${i}>`;
    added.push({ content, id: vocab.length, normalized: false });
    vocab.push([content, 0]);
  }
  try {
    return new T5Tokenizer({
      vocab,
      unkId: spm.unkId,
      eosId: spm.eosId >= 0 ? spm.eosId : 1,
      padId: spm.padId >= 0 ? spm.padId : 0,
      charsmap: spm.precompiledCharsmap.length > 0 ? new PrecompiledCharsmap(spm.precompiledCharsmap) : null,
      addedTokens: added,
      maxLength,
    });
  } catch (e) {
    throw new TokenizerError(`cannot build the T5 tokenizer from ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** T5 tokenizer from a folder: tokenizer.json if present, else spiece.model. */
export async function loadT5Tokenizer(dir: string, maxLength = 256): Promise<T5Tokenizer> {
  const json = path.join(dir, 'tokenizer.json');
  if (existsSync(json)) return loadT5TokenizerJson(json, maxLength);
  const spm = path.join(dir, 'spiece.model');
  if (existsSync(spm)) return loadT5SentencePiece(spm, maxLength);
  throw new TokenizerError(
    `T5 tokenizer folder ${dir} has neither tokenizer.json nor spiece.model; ` +
      'expected one of them (the tokenizer_2/ folder of a diffusers FLUX.1 model)',
  );
}

/**
 * T5 sequence length the diffusers FLUX pipelines use for a model folder: 512 for dev (transformer config
 * `guidance_embeds: true`, or a model_index / folder name saying dev), else 256 (schnell).
 */
export async function detectT5Length(modelDir: string): Promise<{ length: number; reason: string }> {
  const cfg = path.join(modelDir, 'transformer', 'config.json');
  if (existsSync(cfg)) {
    const c = (await readJson(cfg)) as { guidance_embeds?: boolean };
    if (typeof c.guidance_embeds === 'boolean') {
      return c.guidance_embeds
        ? { length: 512, reason: 'transformer/config.json has guidance_embeds: true (FLUX.1 [dev])' }
        : { length: 256, reason: 'transformer/config.json has guidance_embeds: false (FLUX.1 [schnell])' };
    }
  }
  const index = path.join(modelDir, 'model_index.json');
  if (existsSync(index)) {
    const text = JSON.stringify(await readJson(index)).toLowerCase();
    if (text.includes('flux.1-dev') || text.includes('flux-dev')) return { length: 512, reason: 'model_index.json names FLUX.1-dev' };
  }
  if (/dev/i.test(path.basename(path.resolve(modelDir)))) return { length: 512, reason: 'the folder name says dev' };
  return { length: 256, reason: 'default for FLUX.1 [schnell] (no transformer/config.json saying otherwise)' };
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
    ({ length: t5Length, reason: t5LengthReason } = await detectT5Length(modelDir));
  }
  const [clip, t5] = await Promise.all([loadClipTokenizer(clipDir), loadT5Tokenizer(t5Dir, t5Length)]);
  return { clip, t5, t5Length, t5LengthReason };
}
