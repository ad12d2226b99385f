/**
 * Tokenizer work is bounded (server hardening): the inputs that stalled the old quadratic CLIP merge loop for
 * seconds (5,000 emoji in one piece, 10,000 CJK characters, one 10,000-letter word) cost O(n log n) merge steps,
 * counted here (never timed); `encode` stops once the encoder's length is filled; and the ids stay those of the
 * plain reference merge loop (lowest rank first, leftmost on ties), which the 309-prompt transformers fixture
 * checks on ordinary prompts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { loadClipTokenizer } from '../../src/clip/load-tokenizer.ts';
import type { CLIPTokenizer } from '../../src/clip/tokenizer.ts';
import { loadT5TokenizerJson } from '../../src/t5/load-tokenizer.ts';
import type { T5Tokenizer } from '../../src/t5/tokenizer.ts';

const CLIP_DIR = fixturePath('tokenizers', 'clip');

let clip: CLIPTokenizer;
let t5: T5Tokenizer;
let vocab: Record<string, number>;
let merges: string[];

beforeAll(async () => {
  clip = await loadClipTokenizer(CLIP_DIR);
  t5 = await loadT5TokenizerJson(path.join(fixturePath('tokenizers', 't5'), 'tokenizer.json'), 256);
  vocab = JSON.parse(readFileSync(path.join(CLIP_DIR, 'vocab.json'), 'utf8')) as Record<string, number>;
  merges = readFileSync(path.join(CLIP_DIR, 'merges.txt'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#version'));
});

/** The textbook BPE loop (quadratic): merge the lowest-ranked adjacent pair, leftmost first, until none applies. */
function referenceBpe(symbols: string[]): number[] {
  const rank = new Map(merges.map((m, i) => [m, i] as const).reverse());
  const syms = [...symbols];
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = rank.get(`${syms[i]} ${syms[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) break;
    syms.splice(best, 2, syms[best]! + syms[best + 1]!);
  }
  return syms.map((s) => vocab[s]!);
}

/** GPT-2's byte-to-unicode table. */
const BYTE_CHARS = (() => {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + n++));
})();

function referenceWord(word: string): number[] {
  const chars = Array.from(new TextEncoder().encode(word), (b) => BYTE_CHARS[b]!);
  chars[chars.length - 1] += '</w>';
  return referenceBpe(chars);
}

/** `count` different words (so no word is cached), each starting with `prefix`. */
function distinctWords(prefix: string, count: number): string {
  return Array.from({ length: count }, (_, i) => `${prefix}${i.toString(36)}x`).join(' ');
}

const ATTACKS: Record<string, string> = {
  '5,000 emoji, no space': '😀'.repeat(5000),
  '10,000 CJK characters': '漢字'.repeat(5000),
  'one 10,000-letter word': 'a'.repeat(10_000),
  'a 10,000-letter word of two letters': 'ab'.repeat(5000),
};

describe('CLIP BPE: bounded work, same ids', () => {
  for (const [name, text] of Object.entries(ATTACKS)) {
    it(`${name}: O(n log n) merge steps`, () => {
      const n = new TextEncoder().encode(text).length; // byte-level symbols of the one piece
      const before = clip.workCount;
      const ids = clip.encode(text);
      const work = clip.workCount - before;
      console.log(`clip work, ${name}: ${work} heap operations for ${n} symbols (n^2 = ${n * n})`);
      expect(ids).toHaveLength(77);
      expect(work).toBeGreaterThan(0);
      expect(work).toBeLessThanOrEqual(4 * n * Math.log2(n)); // the old loop scanned all pairs per merge: ~n^2
    });
  }

  it('doubling a piece roughly doubles the work (not four times)', () => {
    const work = (text: string) => {
      const before = clip.workCount;
      clip.encodeText(text);
      return clip.workCount - before;
    };
    const a = work('😀'.repeat(2000));
    const b = work('😀'.repeat(4000));
    expect(b / a).toBeLessThan(2.5);
  });

  it('gives the ids of the reference merge loop on long and random pieces', () => {
    for (const text of ['😀'.repeat(300), '漢字'.repeat(300), 'a'.repeat(1000), 'ab'.repeat(400), 'aaab'.repeat(200), '😀🎉'.repeat(150), 'ééé'.repeat(200)]) {
      expect(clip.encodeText(text), text.slice(0, 8)).toEqual(referenceWord(text));
    }
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // one pre-token each: letters only, or symbols only (CLIP's split puts the two classes in separate pieces)
    for (const alphabet of [['a', 'b', 'e', 'r', 's', 't', 'th', 'in', 'é', '漢'], ['😀', '🎉', '!', '?', '#']]) {
      for (let i = 0; i < 300; i++) {
        let word = '';
        for (let j = 0, len = 1 + Math.floor(rnd() * 40); j < len; j++) word += alphabet[Math.floor(rnd() * alphabet.length)];
        expect(clip.encodeText(word), word).toEqual(referenceWord(word));
      }
    }
  });

  it('encode stops once 77 positions are filled: a long prompt costs what its first words cost', () => {
    const before = clip.workCount;
    const ids = clip.encode(distinctWords('c', 2000));
    const mid = clip.workCount;
    clip.tokenize(distinctWords('d', 2000)); // the same shape, not cached: every word merged
    expect(ids).toEqual(clip.tokenize(distinctWords('c', 2000)).ids);
    expect(mid - before).toBeLessThan((clip.workCount - mid) / 10);
  });
});

describe('T5 unigram: bounded work', () => {
  for (const [name, text] of Object.entries(ATTACKS)) {
    it(`${name}: linear in the length`, () => {
      const before = t5.workCount;
      const ids = t5.encode(text);
      const work = t5.workCount - before;
      expect(ids).toEqual(t5.tokenize(text).ids);
      expect(work).toBeLessThanOrEqual(64 * text.length); // lattice candidates: n x the longest piece at most
    });
  }

  it('encode stops once 256 positions are filled', () => {
    const before = t5.workCount;
    const ids = t5.encode(distinctWords('e', 2000));
    const mid = t5.workCount;
    t5.tokenize(distinctWords('f', 2000)); // the same shape, not cached
    expect(ids).toEqual(t5.tokenize(distinctWords('e', 2000)).ids);
    expect(mid - before).toBeLessThan((t5.workCount - mid) / 4);
  });
});
