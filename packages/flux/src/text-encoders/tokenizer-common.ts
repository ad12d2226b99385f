/** Pieces shared by the CLIP and T5 tokenizers: the result type and the added-token splitter. */
import { FluxError } from '@flux-ts/core';

/** How one prompt is tokenized for one text encoder. */
export interface TokenizedPrompt {
  /** the full sequence the encoder receives: specials and padding included, length = max length */
  ids: number[];
  /** the token string of each id */
  tokens: string[];
  /** ids before the padding (specials included) */
  length: number;
  /** whether content tokens were cut to fit */
  truncated: boolean;
  /** length the sequence would have without truncation (specials included, no padding) */
  fullLength: number;
  /** the content ids that were cut */
  droppedIds: number[];
  /** their text (decoded), '' when nothing was cut */
  droppedText: string;
}

/** An added (special) token of a tokenizers pipeline. */
export interface AddedToken {
  content: string;
  id: number;
  /** matched on the normalized text (true) or on the raw text (false) */
  normalized: boolean;
}

export interface Segment {
  text: string;
  /** set when the segment is an added token */
  id?: number;
}

/**
 * tokenizers' AddedVocabulary split: leftmost-longest matches of the raw-text tokens first, then each other
 * segment is normalized and split on the normalized tokens. Non-token segments come back normalized.
 * (lstrip / rstrip / single_word are not supported: no FLUX tokenizer uses them.)
 */
export class AddedTokenSplitter {
  private readonly raw: AddedToken[];
  private readonly norm: AddedToken[];

  constructor(tokens: AddedToken[]) {
    const byLength = [...tokens].filter((t) => t.content.length > 0).sort((a, b) => b.content.length - a.content.length);
    this.raw = byLength.filter((t) => !t.normalized);
    this.norm = byLength.filter((t) => t.normalized);
  }

  split(text: string, normalize: (s: string) => string): Segment[] {
    const out: Segment[] = [];
    for (const seg of splitOn(text, this.raw)) {
      if (seg.id !== undefined) out.push(seg);
      else out.push(...splitOn(normalize(seg.text), this.norm));
    }
    return out.filter((s) => s.id !== undefined || s.text.length > 0);
  }
}

function splitOn(text: string, tokens: AddedToken[]): Segment[] {
  if (tokens.length === 0 || text.length === 0) return [{ text }];
  const out: Segment[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const t = tokens.find((tok) => text.startsWith(tok.content, i)); // sorted longest first
    if (t) {
      if (i > start) out.push({ text: text.slice(start, i) });
      out.push({ text: t.content, id: t.id });
      i += t.content.length;
      start = i;
    } else {
      i++;
    }
  }
  if (start < text.length) out.push({ text: text.slice(start) });
  return out;
}

/** A tokenizer folder or file that cannot be read or built. */
export class TokenizerError extends FluxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOKENIZER', message, options);
    this.name = 'TokenizerError';
  }
}

/** `readJson`'s errors as TokenizerErrors (shared/files.ts). */
export const tokenizerError = (_code: string, message: string, cause?: unknown): TokenizerError =>
  new TokenizerError(message, cause === undefined ? undefined : { cause });
