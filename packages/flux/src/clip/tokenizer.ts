/**
 * CLIP's byte-level BPE tokenizer, as transformers 5's `CLIPTokenizer` (tokenizers-backed) runs it for FLUX
 * (`padding="max_length", max_length=77, truncation=True`):
 *   added tokens split off (raw text, then normalized text for `normalized: true` ones)
 *   -> NFC, every whitespace run to one space, lowercase
 *   -> split by CLIP's regex (contractions | letters+ | one digit | other non-space runs), spaces dropped
 *   -> UTF-8 bytes mapped to printable chars (GPT-2 byte-level), `</w>` on the last char, BPE merges by rank
 *   -> <|startoftext|> ids <|endoftext|>, truncated to 77, padded with <|endoftext|>.
 * NOTE: no ftfy: transformers 5 has no ftfy path at all (the old slow tokenizer used ftfy when installed,
 * else a BasicTokenizer clean-up); diffusers does not install ftfy either.
 */
import { AddedTokenSplitter, type AddedToken, type TokenizedPrompt } from '../text-encoders/tokenizer-common.ts';

export const CLIP_BOS = '<|startoftext|>';
export const CLIP_EOS = '<|endoftext|>';

/** Rust `char::is_whitespace` / Oniguruma `\s` (JS `\s` differs: it has U+FEFF, lacks U+0085). */
const WS = '\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WS_RUN = new RegExp(`[${WS}]+`, 'gu');
const CLIP_SPLIT = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WS}\\p{L}\\p{N}]+`,
  'gu',
);
/** The ByteLevel pre-tokenizer's own split (GPT-2's regex, use_regex: true), applied to each piece above. */
const BYTE_LEVEL_SPLIT = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  'gu',
);

/** GPT-2's byte -> printable unicode char table (bytes_to_unicode). */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  }
  return table;
}
const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

export interface ClipTokenizerOptions {
  /** token -> id (vocab.json) */
  vocab: Record<string, number>;
  /** merge rules in rank order, each "a b" (merges.txt without its #version line) */
  merges: string[];
  /** added tokens; default: <|startoftext|> and <|endoftext|>, not normalized */
  addedTokens?: AddedToken[];
  maxLength?: number;
}

export class CLIPTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  private readonly vocab: Map<string, number>;
  private readonly idToToken: string[];
  private readonly ranks = new Map<string, number>();
  private readonly added: AddedTokenSplitter;
  private readonly cache = new Map<string, number[]>();

  constructor(opts: ClipTokenizerOptions) {
    this.vocab = new Map(Object.entries(opts.vocab));
    this.idToToken = [];
    for (const [t, id] of this.vocab) this.idToToken[id] = t;
    opts.merges.forEach((m, i) => {
      if (!this.ranks.has(m)) this.ranks.set(m, i);
    });
    const bos = this.vocab.get(CLIP_BOS);
    const eos = this.vocab.get(CLIP_EOS);
    if (bos === undefined || eos === undefined) throw new Error(`CLIP vocabulary lacks ${CLIP_BOS} or ${CLIP_EOS}`);
    this.bosId = bos;
    this.eosId = eos;
    this.padId = eos;
    this.maxLength = opts.maxLength ?? 77;
    const addedTokens = opts.addedTokens ?? [
      { content: CLIP_BOS, id: bos, normalized: false },
      { content: CLIP_EOS, id: eos, normalized: false },
    ];
    for (const t of addedTokens) this.idToToken[t.id] ??= t.content;
    this.added = new AddedTokenSplitter(addedTokens);
  }

  /**
   * NFC, whitespace runs to one space, lowercase (the tokenizers normalizer of CLIPTokenizer).
   * NOTE: tokenizers lowercases char by char, so a word-final Σ becomes σ, not ς as JS's contextual
   * toLowerCase would give; Final_Sigma is JS's only contextual rule, hence the replace first.
   */
  normalize(text: string): string {
    return text.normalize('NFC').replace(WS_RUN, ' ').replace(/\u03a3/g, '\u03c3').toLowerCase();
  }

  /** Ids of the text without specials, padding or truncation. */
  encodeText(text: string): number[] {
    const ids: number[] = [];
    for (const seg of this.added.split(text, (s) => this.normalize(s))) {
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      for (const piece of seg.text.matchAll(CLIP_SPLIT)) {
        for (const m of piece[0].matchAll(BYTE_LEVEL_SPLIT)) ids.push(...this.bpeWord(m[0]));
      }
    }
    return ids;
  }

  /** The sequence the text encoder receives: BOS, ids, EOS, truncated and padded to maxLength. */
  tokenize(text: string, maxLength = this.maxLength): TokenizedPrompt {
    const content = this.encodeText(text);
    const keep = Math.max(0, maxLength - 2);
    const truncated = content.length > keep;
    const kept = content.slice(0, keep);
    const ids = [this.bosId, ...kept, this.eosId];
    const length = ids.length;
    while (ids.length < maxLength) ids.push(this.padId);
    return {
      ids,
      tokens: ids.map((id) => this.idToToken[id] ?? `<${id}>`),
      length,
      truncated,
      fullLength: content.length + 2,
      droppedIds: content.slice(keep),
      droppedText: truncated ? this.decode(content.slice(keep)) : '',
    };
  }

  /** Text of ids (byte-level decode, `</w>` as a space). */
  decode(ids: number[]): string {
    const bytes: number[] = [];
    let out = '';
    const flush = () => {
      out += new TextDecoder().decode(new Uint8Array(bytes));
      bytes.length = 0;
    };
    for (const id of ids) {
      const tok = this.idToToken[id] ?? '';
      if (id === this.bosId || id === this.eosId) {
        flush();
        out += tok;
        continue;
      }
      const word = tok.endsWith('</w>') ? tok.slice(0, -4) : tok;
      for (const ch of word) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
      }
      if (word !== tok) {
        flush();
        out += ' ';
      }
    }
    flush();
    return out.trim();
  }

  idToTokenString(id: number): string {
    return this.idToToken[id] ?? `<${id}>`;
  }

  /** Byte-level BPE of one pre-token: merges applied lowest rank first, leftmost first on ties (as tokenizers' Word::merge_all). */
  private bpeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const chars = Array.from(new TextEncoder().encode(word), (b) => BYTE_TO_CHAR[b]!);
    if (chars.length === 0) return [];
    chars[chars.length - 1] += '</w>';
    const syms = chars;
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.ranks.get(`${syms[i]} ${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      syms.splice(best, 2, syms[best]! + syms[best + 1]!);
    }
    const ids = syms.map((s) => this.vocab.get(s) ?? this.eosId); // unk is <|endoftext|>; byte-level never needs it
    if (this.cache.size < 50_000) this.cache.set(word, ids);
    return ids;
  }
}
