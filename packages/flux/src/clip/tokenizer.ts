/**
 * CLIP's byte-level BPE tokenizer, as transformers 5's `CLIPTokenizer` (tokenizers-backed) runs it for FLUX
 * (`padding="max_length", max_length=77, truncation=True`):
 *   added tokens split off (raw text, then normalized text for `normalized: true` ones)
 *   -> NFC, every whitespace run to one space, lowercase
 *   -> split by CLIP's regex (contractions | letters+ | one digit | other non-space runs), spaces dropped
 *   -> UTF-8 bytes mapped to printable chars (GPT-2 byte-level), `</w>` on the last char, BPE merges by rank
 *   -> <|startoftext|> ids <|endoftext|>, truncated to 77, padded with <|endoftext|>.
 * The merge loop is tokenizers' own (`Word::merge_all`: a heap of candidate pairs by rank, then position), so one
 * pre-token of n symbols costs O(n log n), not O(n^2): a prompt of 5,000 emoji with no space is one 20,000-byte
 * piece. `encode` stops once the encoder's length is filled; pieces are never cut (that could change their ids).
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
  /** (left id, right id) -> rank * 2^20 + merged id; the pair key is left * 2^20 + right. */
  private readonly merges = new Map<number, number>();
  private readonly added: AddedTokenSplitter;
  private readonly cache = new Map<string, number[]>();
  /** Merge-loop operations (heap pushes and pops) since construction: a measure of the work done. */
  workCount = 0;

  constructor(opts: ClipTokenizerOptions) {
    this.vocab = new Map(Object.entries(opts.vocab));
    this.idToToken = [];
    for (const [t, id] of this.vocab) this.idToToken[id] = t;
    opts.merges.forEach((m, rank) => {
      const sp = m.indexOf(' ');
      const a = this.vocab.get(m.slice(0, sp));
      const b = this.vocab.get(m.slice(sp + 1));
      const merged = this.vocab.get(m.slice(0, sp) + m.slice(sp + 1));
      if (a === undefined || b === undefined || merged === undefined) return; // unusable rule (tokenizers refuses such a file)
      const key = a * ID_SPACE + b;
      if (!this.merges.has(key)) this.merges.set(key, rank * ID_SPACE + merged);
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

  /** Ids of the text without specials, padding or truncation; with `limit`, it stops once it has more than that. */
  encodeText(text: string, limit = Infinity): number[] {
    const ids: number[] = [];
    for (const seg of this.added.split(text, (s) => this.normalize(s))) {
      if (ids.length > limit) break;
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      for (const piece of seg.text.matchAll(CLIP_SPLIT)) {
        for (const m of piece[0].matchAll(BYTE_LEVEL_SPLIT)) ids.push(...this.bpeWord(m[0]));
        if (ids.length > limit) break;
      }
    }
    return ids;
  }

  /** The ids the text encoder receives (as `tokenize(text).ids`), doing no more work than those need. */
  encode(text: string, maxLength = this.maxLength): number[] {
    const keep = Math.max(0, maxLength - 2);
    const ids = [this.bosId, ...this.encodeText(text, keep).slice(0, keep), this.eosId];
    while (ids.length < maxLength) ids.push(this.padId);
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

  /**
   * Byte-level BPE of one pre-token, as tokenizers' `Word::merge_all`: every adjacent pair with a merge rule goes
   * on a heap ordered by (rank, position); the lowest is merged if still current, and the new pairs it forms with
   * its neighbours are pushed. O(n log n) for n symbols. Words up to 256 characters are cached (10,000 of them).
   */
  private bpeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const chars = Array.from(new TextEncoder().encode(word), (b) => BYTE_TO_CHAR[b]!);
    const n = chars.length;
    if (n === 0) return [];
    chars[n - 1] += '</w>';
    const unk = this.eosId; // <|endoftext|> is CLIP's unk; byte-level never needs it with the full vocabulary
    const sym = Int32Array.from(chars, (ch) => this.vocab.get(ch) ?? unk);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new MergeHeap();
    const push = (pos: number) => {
      const m = this.merges.get(sym[pos]! * ID_SPACE + sym[next[pos]!]!);
      if (m !== undefined) heap.push(Math.floor(m / ID_SPACE) * POS_SPACE + pos);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.size > 0) {
      const top = heap.pop();
      this.workCount += 2;
      const rank = Math.floor(top / POS_SPACE);
      const pos = top - rank * POS_SPACE;
      const right = next[pos]!;
      if (!alive[pos] || right < 0) continue;
      const m = this.merges.get(sym[pos]! * ID_SPACE + sym[right]!);
      if (m === undefined || Math.floor(m / ID_SPACE) !== rank) continue; // stale: a neighbour changed since
      sym[pos] = m % ID_SPACE;
      alive[right] = 0;
      next[pos] = next[right]!;
      if (next[pos]! >= 0) prev[next[pos]!] = pos;
      if (prev[pos]! >= 0) push(prev[pos]!);
      if (next[pos]! >= 0) push(pos);
    }
    const ids: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) ids.push(sym[i]!);
    if (word.length <= 256 && this.cache.size < 10_000) this.cache.set(word, ids);
    return ids;
  }
}

/** Ids fit in 20 bits (CLIP has 49,408), ranks too; pair keys and rank/id pairs are exact in a double. */
const ID_SPACE = 2 ** 20;
/** Heap entries are rank * 2^32 + position: ordered by rank, then leftmost first. */
const POS_SPACE = 2 ** 32;

/** A binary min-heap of numbers. */
class MergeHeap {
  private data = new Float64Array(64);
  size = 0;

  push(v: number): void {
    if (this.size === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    const d = this.data;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (d[parent]! <= v) break;
      d[i] = d[parent]!;
      i = parent;
    }
    d[i] = v;
  }

  pop(): number {
    const d = this.data;
    const top = d[0]!;
    const last = d[--this.size]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const r = l + 1;
      const c = r < this.size && d[r]! < d[l]! ? r : l;
      if (d[c]! >= last) break;
      d[i] = d[c]!;
      i = c;
    }
    d[i] = last;
    return top;
  }
}
