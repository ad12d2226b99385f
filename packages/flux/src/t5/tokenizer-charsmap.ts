/**
 * SentencePiece's `precompiled_charsmap` normalizer, as tokenizers' `Precompiled` normalizer applies it.
 * Blob: u32 LE trie size in bytes, then the Darts-clone double-array trie (u32 units), then the replacement
 * strings, each ending in \0. The trie maps a UTF-8 key to the offset of its replacement.
 * Each extended grapheme cluster under 6 UTF-8 bytes is looked up whole; otherwise (or when it has no rule)
 * char by char. NOTE: the lookup takes the SHORTEST rule that is a prefix of the key (results[0] of a
 * common-prefix search) and replaces the whole key with it, exactly as tokenizers (spm_precompiled) does.
 */
export class PrecompiledCharsmap {
  private readonly trie: Uint32Array;
  private readonly pool: Uint8Array;
  private readonly cache = new Map<string, string | null>();
  private static readonly segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

  constructor(blob: Uint8Array) {
    if (blob.length < 4) throw new Error('precompiled_charsmap is too short');
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieSize = view.getUint32(0, true);
    if (trieSize % 4 !== 0 || 4 + trieSize > blob.length) throw new Error('precompiled_charsmap: bad trie size');
    this.trie = new Uint32Array(trieSize / 4);
    for (let i = 0; i < this.trie.length; i++) this.trie[i] = view.getUint32(4 + 4 * i, true);
    this.pool = blob.subarray(4 + trieSize);
  }

  static fromBase64(b64: string): PrecompiledCharsmap {
    return new PrecompiledCharsmap(new Uint8Array(Buffer.from(b64, 'base64')));
  }

  /** Value of the shortest key in the trie that is a prefix of `key` (Darts common_prefix_search, first hit). */
  private firstPrefixValue(key: Uint8Array): number | undefined {
    const unit = (i: number): number => {
      const u = this.trie[i];
      if (u === undefined) throw new Error('precompiled_charsmap: trie index out of range');
      return u;
    };
    const offset = (u: number) => (u >>> 10) << ((u & (1 << 9)) >>> 6);
    const label = (u: number) => u & ((1 << 31) | 0xff);
    const hasLeaf = (u: number) => ((u >>> 8) & 1) === 1;
    const value = (u: number) => u & 0x7fffffff;
    let node = 0;
    node ^= offset(unit(node));
    for (const c of key) {
      if (c === 0) return undefined;
      node ^= c;
      const u = unit(node);
      if (label(u) >>> 0 !== c) return undefined;
      node ^= offset(u);
      if (hasLeaf(u)) return value(unit(node));
    }
    return undefined;
  }

  /** The replacement for a chunk, or null when no rule applies. */
  transform(chunk: string): string | null {
    const hit = this.cache.get(chunk);
    if (hit !== undefined) return hit;
    const start = this.firstPrefixValue(new TextEncoder().encode(chunk));
    let out: string | null = null;
    if (start !== undefined) {
      let end = start;
      while (end < this.pool.length && this.pool[end] !== 0) end++;
      out = new TextDecoder().decode(this.pool.subarray(start, end));
    }
    if (this.cache.size < 100_000) this.cache.set(chunk, out);
    return out;
  }

  normalize(text: string): string {
    let out = '';
    for (const { segment: g } of PrecompiledCharsmap.segmenter.segment(text)) {
      if (utf8Length(g) < 6) {
        const norm = this.transform(g);
        if (norm !== null) {
          out += norm;
          continue;
        }
      }
      for (const ch of g) {
        const norm = this.transform(ch);
        out += norm ?? ch;
      }
    }
    return out;
  }
}

function utf8Length(s: string): number {
  let n = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}
