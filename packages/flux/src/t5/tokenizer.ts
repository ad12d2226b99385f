/**
 * T5's SentencePiece unigram tokenizer, as transformers 5's `T5TokenizerFast` (= `T5Tokenizer`, tokenizers-backed)
 * runs it for FLUX (`padding="max_length", max_length=256 | 512, truncation=True`):
 *   added tokens (<pad>, </s>, <unk>, <extra_id_N>) split off the raw text
 *   -> the model's precompiled_charsmap normalizer (nmt_nfkc for T5)
 *   -> split on whitespace, `▁` prepended to every word and every `▁` starting a new piece (Metaspace, always, split)
 *   -> Viterbi over the unigram scores (unknown chars: min score - 10, consecutive unknowns fused into one <unk>)
 *   -> ids + </s>, truncated to max length (</s> kept), padded with <pad> = 0.
 * Viterbi costs O(n * longest piece) per word; `encode` stops once the encoder's length is filled.
 * NOTE: transformers 5 rebuilds this pipeline from the class whatever tokenizer.json says (it keeps only the
 * vocabulary, scores and charsmap), e.g. a file's `Replace(" {2,}", " ")` normalizer or `add_prefix_space`
 * Metaspace is ignored; so is done here.
 */
import { AddedTokenSplitter, type AddedToken, type TokenizedPrompt } from '../text-encoders/tokenizer-common.ts';
import { PrecompiledCharsmap } from './tokenizer-charsmap.ts';

const META = '\u2581';
/** Rust char::is_whitespace (tokenizers' WhitespaceSplit). */
const WS_SPLIT = /[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
const K_UNK_PENALTY = 10.0;

export interface T5TokenizerOptions {
  /** pieces in id order with their log-probability scores */
  vocab: [string, number][];
  unkId: number;
  eosId?: number;
  padId?: number;
  charsmap?: PrecompiledCharsmap | null;
  addedTokens?: AddedToken[];
  maxLength?: number;
}

export class T5Tokenizer {
  readonly maxLength: number;
  readonly unkId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly vocabSize: number;
  private readonly pieces: string[];
  private readonly scores: Float64Array;
  private readonly pieceToId = new Map<string, number>();
  private readonly maxPieceLength: number;
  private readonly unkScore: number;
  private readonly charsmap: PrecompiledCharsmap | null;
  private readonly added: AddedTokenSplitter;
  private readonly cache = new Map<string, number[]>();
  /** Viterbi lattice candidates looked up since construction: a measure of the work done. */
  workCount = 0;

  constructor(opts: T5TokenizerOptions) {
    this.pieces = opts.vocab.map(([p]) => p);
    this.scores = Float64Array.from(opts.vocab, ([, s]) => s);
    let minScore = Infinity;
    let maxLen = 0;
    opts.vocab.forEach(([p, s], id) => {
      this.pieceToId.set(p, id); // last wins, as tokenizers' token_to_ids
      if (s < minScore) minScore = s;
      if (p.length > maxLen) maxLen = p.length;
    });
    this.vocabSize = opts.vocab.length;
    this.maxPieceLength = maxLen;
    this.unkScore = minScore - K_UNK_PENALTY;
    this.unkId = opts.unkId;
    this.eosId = opts.eosId ?? 1;
    this.padId = opts.padId ?? 0;
    this.maxLength = opts.maxLength ?? 256;
    this.charsmap = opts.charsmap ?? null;
    for (const id of [this.unkId, this.eosId, this.padId]) {
      if (!(id >= 0 && id < this.vocabSize)) throw new Error(`special id ${id} outside the vocabulary (size ${this.vocabSize})`);
    }
    this.added = new AddedTokenSplitter(opts.addedTokens ?? []);
  }

  normalize(text: string): string {
    return this.charsmap ? this.charsmap.normalize(text) : text;
  }

  /** Ids of the text without </s>, padding or truncation; with `limit`, it stops once it has more than that. */
  encodeText(text: string, limit = Infinity): number[] {
    const ids: number[] = [];
    for (const seg of this.added.split(text, (s) => this.normalize(s))) {
      if (ids.length > limit) break;
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      for (const word of seg.text.split(WS_SPLIT)) {
        if (word.length === 0) continue;
        for (const piece of metaspacePieces(word)) ids.push(...this.viterbi(piece));
        if (ids.length > limit) break;
      }
    }
    return ids;
  }

  /** The ids the encoder receives (as `tokenize(text).ids`), doing no more work than those need. */
  encode(text: string, maxLength = this.maxLength): number[] {
    const keep = Math.max(0, maxLength - 1);
    const ids = [...this.encodeText(text, keep).slice(0, keep), this.eosId];
    while (ids.length < maxLength) ids.push(this.padId);
    return ids;
  }

  /** The sequence the encoder receives: ids + </s>, truncated and padded to maxLength. */
  tokenize(text: string, maxLength = this.maxLength): TokenizedPrompt {
    const content = this.encodeText(text);
    const keep = Math.max(0, maxLength - 1);
    const truncated = content.length > keep;
    const ids = [...content.slice(0, keep), this.eosId];
    const length = ids.length;
    while (ids.length < maxLength) ids.push(this.padId);
    return {
      ids,
      tokens: ids.map((id) => this.idToToken(id)),
      length,
      truncated,
      fullLength: content.length + 1,
      droppedIds: content.slice(keep),
      droppedText: truncated ? this.decode(content.slice(keep)) : '',
    };
  }

  idToToken(id: number): string {
    return this.pieces[id] ?? `<${id}>`;
  }

  decode(ids: number[]): string {
    return ids.map((id) => this.idToToken(id)).join('').replaceAll(META, ' ').replace(/^ /, '');
  }

  /** tokenizers' Unigram::encode_optimized (SentencePiece's Viterbi), fuse_unk = true. */
  private viterbi(s: string): number[] {
    const hit = this.cache.get(s);
    if (hit) return hit;
    const n = s.length;
    const bestScore = new Float64Array(n + 1);
    const startsAt = new Int32Array(n + 1).fill(-1);
    const bestId = new Int32Array(n + 1);
    let pos = 0;
    while (pos < n) {
      const base = bestScore[pos]!;
      const cp = s.codePointAt(pos)!;
      const charLen = cp > 0xffff ? 2 : 1;
      let hasSingle = false;
      // every piece that is a prefix of s[pos..], shortest first (the trie's order)
      const limit = Math.min(n, pos + this.maxPieceLength);
      for (let end = pos + charLen; end <= limit; ) {
        this.workCount++;
        const id = this.pieceToId.get(s.slice(pos, end));
        if (id !== undefined) {
          const cand = this.scores[id]! + base;
          if (startsAt[end] === -1 || cand > bestScore[end]!) {
            bestScore[end] = cand;
            startsAt[end] = pos;
            bestId[end] = id;
          }
          if (end - pos === charLen) hasSingle = true;
        }
        if (end >= n) break;
        end += s.codePointAt(end)! > 0xffff ? 2 : 1;
      }
      if (!hasSingle) {
        const end = pos + charLen;
        const cand = this.unkScore + base;
        if (startsAt[end] === -1 || cand > bestScore[end]!) {
          bestScore[end] = cand;
          startsAt[end] = pos;
          bestId[end] = this.unkId;
        }
      }
      pos += charLen;
    }
    const out: number[] = [];
    let end = n;
    let inUnk = false;
    while (end > 0) {
      const id = bestId[end]!;
      if (id === this.unkId) {
        if (!inUnk) out.push(id); // fused run of unknowns
        inUnk = true;
      } else {
        out.push(id);
        inUnk = false;
      }
      end = startsAt[end]!;
    }
    out.reverse();
    if (s.length <= 256 && this.cache.size < 10_000) this.cache.set(s, out);
    return out;
  }
}

/** Metaspace(replacement ▁, prepend_scheme always, split true) of one whitespace-free word. */
function metaspacePieces(word: string): string[] {
  const w = word.startsWith(META) ? word : META + word;
  const out: string[] = [];
  let start = 0;
  for (let i = 1; i < w.length; i++) {
    if (w[i] === META) {
      out.push(w.slice(start, i));
      start = i;
    }
  }
  out.push(w.slice(start));
  return out;
}
