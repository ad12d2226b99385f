/**
 * Loading the T5 tokenizer from its folder (FLUX's `tokenizer_2/`): tokenizer.json (Unigram), or spiece.model when
 * that is all there is.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { TokenizerError, tokenizerError, type AddedToken } from '../text-encoders/tokenizer-common.ts';
import { readJson } from '../shared/files.ts';
import { T5Tokenizer } from './tokenizer.ts';
import { PrecompiledCharsmap } from './tokenizer-charsmap.ts';
import { parseSentencePieceModel, PieceType } from './tokenizer-spiece.ts';

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
  const json = readJson(file, 're-download it', tokenizerError) as TokenizerJson;
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

