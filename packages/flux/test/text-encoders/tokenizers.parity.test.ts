/**
 * CLIP and T5 tokenizers against transformers 5.23 (test/reference/gen_tokenizers.py): the real CLIP vocabulary
 * and a small SentencePiece unigram model, >= 200 prompts, ids identical for every prompt, both T5 loading paths.
 */
import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFluxError } from '@flux-ts/core';
import { fixturePath } from '../../../../test/harness/fixtures.ts';
import { loadClipTokenizer } from '../../src/clip/load-tokenizer.ts';
import type { CLIPTokenizer } from '../../src/clip/tokenizer.ts';
import { loadT5SentencePiece, loadT5Tokenizer, loadT5TokenizerJson } from '../../src/t5/load-tokenizer.ts';
import type { T5Tokenizer } from '../../src/t5/tokenizer.ts';
import { loadTokenizers, t5LengthOf, TokenizerError } from '../../src/text-encoders/tokenizers.ts';
import { PrecompiledCharsmap } from '../../src/t5/tokenizer-charsmap.ts';
import { parseSentencePieceModel, PieceType } from '../../src/t5/tokenizer-spiece.ts';

interface Case {
  text: string;
  clip: number[];
  clip_full_length: number;
  t5: number[];
  t5_full_length: number;
  t5_spm?: number[];
  t5_spm_full_length?: number;
}
const table = JSON.parse(readFileSync(fixturePath('tokenizers', 'prompts.json'), 'utf8')) as {
  meta: { clip_length: number; t5_length: number };
  cases: Case[];
};
const CLIP_DIR = fixturePath('tokenizers', 'clip');
const T5_DIR = fixturePath('tokenizers', 't5');

let clip: CLIPTokenizer;
let t5json: T5Tokenizer;
let t5spm: T5Tokenizer;
let tmp: string;

beforeAll(async () => {
  clip = await loadClipTokenizer(CLIP_DIR);
  t5json = await loadT5TokenizerJson(path.join(T5_DIR, 'tokenizer.json'), table.meta.t5_length);
  t5spm = await loadT5SentencePiece(path.join(T5_DIR, 'spiece.model'), table.meta.t5_length);
  tmp = await mkdtemp(path.join(tmpdir(), 'flux-tokenizers-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function expectTokenizerError(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(TokenizerError);
  expect(isFluxError(e)).toBe(true);
  expect((e as Error).message).toMatch(pattern);
}

describe('reference table', () => {
  it('has at least 200 prompts, truncating ones among them', () => {
    expect(table.cases.length).toBeGreaterThanOrEqual(200);
    expect(table.cases.filter((c) => c.clip_full_length > 77).length).toBeGreaterThan(5);
    expect(table.cases.filter((c) => c.t5_full_length > table.meta.t5_length).length).toBeGreaterThan(2);
  });

  it.each(table.cases.map((c, i) => [i, c] as const))('CLIP #%i', (_, c) => {
    const r = clip.tokenize(c.text);
    expect(r.ids).toEqual(c.clip);
    expect(r.fullLength).toBe(c.clip_full_length);
    expect(r.truncated).toBe(c.clip_full_length > 77);
    expect(r.ids.length).toBe(77);
  });

  it.each(table.cases.map((c, i) => [i, c] as const))('T5 from tokenizer.json #%i', (_, c) => {
    const r = t5json.tokenize(c.text);
    expect(r.ids).toEqual(c.t5);
    expect(r.fullLength).toBe(c.t5_full_length);
    expect(r.truncated).toBe(c.t5_full_length > table.meta.t5_length);
  });

  it.each(table.cases.map((c, i) => [i, c] as const))('T5 from spiece.model #%i', (_, c) => {
    const r = t5spm.tokenize(c.text);
    expect(r.ids).toEqual(c.t5_spm ?? c.t5);
    expect(r.fullLength).toBe(c.t5_spm_full_length ?? c.t5_full_length);
  });
});

describe('CLIP tokenizer', () => {
  it('wraps in BOS/EOS, pads with EOS, cuts content at 75 and reports the dropped text', () => {
    const r = clip.tokenize('a photo of a cat');
    expect(r.ids.slice(0, 7)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
    expect(r.tokens.slice(0, 3)).toEqual(['<|startoftext|>', 'a</w>', 'photo</w>']);
    expect(r.length).toBe(7);
    const long = clip.tokenize(`${'cat '.repeat(75)}dog bird`);
    expect(long.truncated).toBe(true);
    expect(long.ids[75]).toBe(2368);
    expect(long.ids[76]).toBe(49407);
    expect(long.droppedText).toBe('dog bird');
    expect(clip.tokenize('cat '.repeat(75)).truncated).toBe(false);
  });

  it('decodes its own ids back to the normalized text', () => {
    expect(clip.decode(clip.encodeText('Hello,  World! café 東京'))).toBe('hello , world ! café 東京');
  });
});

describe('T5 tokenizer', () => {
  it('appends </s>, pads with <pad>, keeps </s> when truncating', () => {
    const short = t5json.tokenize('a photo of a cat', 16);
    expect(short.ids.length).toBe(16);
    expect(short.ids[short.length - 1]).toBe(1);
    expect(short.ids.slice(short.length)).toEqual(new Array(16 - short.length).fill(0));
    const cut = t5json.tokenize('photo '.repeat(20), 8);
    expect(cut.truncated).toBe(true);
    expect(cut.ids).toEqual([1505, 1505, 1505, 1505, 1505, 1505, 1505, 1]);
    expect(cut.droppedIds.length).toBe(13);
    expect(cut.droppedText.trim()).toBe('photo '.repeat(13).trim());
  });

  it('maps unknown characters to <unk> (2), fused per run', () => {
    const ids = t5json.encodeText('\u{1D11E}\u{1D11E}');
    expect(ids.filter((i) => i === 2).length).toBe(1);
  });

  it('both loading paths agree on vocabulary size and specials', () => {
    expect(t5json.vocabSize).toBe(t5spm.vocabSize);
    expect([t5json.unkId, t5json.eosId, t5json.padId]).toEqual([2, 1, 0]);
    expect([t5spm.unkId, t5spm.eosId, t5spm.padId]).toEqual([2, 1, 0]);
    expect(t5spm.encodeText('<extra_id_0>')).toEqual([t5spm.vocabSize - 1]);
  });
});

describe('spiece.model reader and charsmap', () => {
  it('reads the pieces, types, special ids and the nmt_nfkc charsmap', () => {
    const m = parseSentencePieceModel(new Uint8Array(readFileSync(path.join(T5_DIR, 'spiece.model'))));
    expect(m.pieces.length).toBe(4000);
    expect(m.pieces.slice(0, 3).map((p) => [p.piece, p.type])).toEqual([
      ['<pad>', PieceType.CONTROL], ['</s>', PieceType.CONTROL], ['<unk>', PieceType.UNKNOWN],
    ]);
    expect([m.unkId, m.eosId, m.padId, m.bosId]).toEqual([2, 1, 0, -1]);
    expect(m.normalizerName).toBe('nmt_nfkc');
    const json = JSON.parse(readFileSync(path.join(T5_DIR, 'tokenizer.json'), 'utf8'));
    expect(Buffer.from(m.precompiledCharsmap).toString('base64')).toBe(json.normalizer.precompiled_charsmap);
    const vocab = json.model.vocab as [string, number][];
    m.pieces.forEach((p, i) => expect([p.piece, p.score]).toEqual(vocab[i]));
  });

  it('normalizes as NFKC with SentencePiece\'s whitespace rules', () => {
    const m = parseSentencePieceModel(new Uint8Array(readFileSync(path.join(T5_DIR, 'spiece.model'))));
    const cs = new PrecompiledCharsmap(m.precompiledCharsmap);
    expect(cs.normalize('ﬁ Ｆｕｌｌ ①')).toBe('fi Full 1');
    expect(cs.normalize('a\tb')).toBe('a b');
    expect(cs.normalize('plain ascii')).toBe('plain ascii');
  });

  it('rejects a file that is not a SentencePiece model', async () => {
    const bad = path.join(tmp, 'bad.model');
    await writeFile(bad, Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    await expectTokenizerError(loadT5SentencePiece(bad), /bad\.model is not a readable SentencePiece model/);
  });
});

describe('loading from a model folder', () => {
  async function modelFolder(name: string, t5Files: string[], transformerConfig?: object): Promise<string> {
    const dir = path.join(tmp, name);
    await cp(CLIP_DIR, path.join(dir, 'tokenizer'), { recursive: true });
    await mkdir(path.join(dir, 'tokenizer_2'), { recursive: true });
    for (const f of t5Files) await cp(path.join(T5_DIR, f), path.join(dir, 'tokenizer_2', f));
    if (transformerConfig) {
      await mkdir(path.join(dir, 'transformer'), { recursive: true });
      await writeFile(path.join(dir, 'transformer', 'config.json'), JSON.stringify(transformerConfig));
    }
    return dir;
  }

  it('loads both tokenizers, 256 for schnell', async () => {
    const dir = await modelFolder('schnell', ['tokenizer.json', 'spiece.model'], { guidance_embeds: false });
    const tk = await loadTokenizers(dir);
    expect(tk.t5Length).toBe(256);
    expect(tk.t5.tokenize('a cat').ids.length).toBe(256);
    expect(tk.clip.tokenize('a cat').ids.length).toBe(77);
  });

  it('uses 512 for dev (guidance_embeds) and honours an explicit length', async () => {
    const dir = await modelFolder('devmodel', ['spiece.model'], { guidance_embeds: true });
    expect(t5LengthOf(dir).length).toBe(512);
    const tk = await loadTokenizers(dir);
    expect(tk.t5Length).toBe(512);
    expect(tk.t5.tokenize('a cat').ids.length).toBe(512);
    expect((await loadTokenizers(dir, { t5Length: 64 })).t5.tokenize('a cat').ids.length).toBe(64);
    await expectTokenizerError(loadTokenizers(dir, { t5Length: 0 }), /T5 length must be an integer in 1\.\.512/);
  });

  it('falls back to spiece.model when tokenizer.json is absent', async () => {
    const dir = await modelFolder('spm-only', ['spiece.model']);
    const t5 = await loadT5Tokenizer(path.join(dir, 'tokenizer_2'));
    for (const c of table.cases.slice(0, 20)) expect(t5.tokenize(c.text).ids).toEqual(c.t5);
  });

  it('reads the older tokenizer.json layout of real T5 folders (normalizer Sequence, add_prefix_space) the same way', async () => {
    // the variant gen_tokenizers.py checks against transformers on every prompt
    const tj = JSON.parse(readFileSync(path.join(T5_DIR, 'tokenizer.json'), 'utf8'));
    tj.normalizer = { type: 'Sequence', normalizers: [tj.normalizer, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] };
    tj.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', add_prefix_space: true, prepend_scheme: 'always', split: true };
    const file = path.join(tmp, 'legacy-tokenizer.json');
    await writeFile(file, JSON.stringify(tj));
    const t5 = await loadT5TokenizerJson(file, table.meta.t5_length);
    for (const c of table.cases) expect(t5.tokenize(c.text).ids).toEqual(c.t5);
  });

  it('reads a CLIP tokenizer.json alone (what transformers 5 save_pretrained writes: merges as pairs)', async () => {
    const dir = path.join(tmp, 'clip-json');
    await mkdir(dir, { recursive: true });
    const vocab = JSON.parse(readFileSync(path.join(CLIP_DIR, 'vocab.json'), 'utf8'));
    const merges = readFileSync(path.join(CLIP_DIR, 'merges.txt'), 'utf8').split('\n').slice(1).filter((l) => l).map((l) => l.split(' '));
    const special = (id: number, content: string, normalized: boolean) =>
      ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized, special: true });
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({
      added_tokens: [special(49406, '<|startoftext|>', true), special(49407, '<|endoftext|>', false)],
      model: { type: 'BPE', vocab, merges, end_of_word_suffix: '</w>' },
    }));
    const c = await loadClipTokenizer(dir);
    for (const x of table.cases) expect(c.tokenize(x.text).ids).toEqual(x.clip);
  });

  it('names the folder and the expected files when something is missing', async () => {
    await expectTokenizerError(loadTokenizers(path.join(tmp, 'nope')), /model folder .*nope does not exist/);
    const noT5 = await modelFolder('no-t5-files', []);
    await expectTokenizerError(loadTokenizers(noT5), /tokenizer_2 has neither tokenizer\.json nor spiece\.model/);
    const noClip = path.join(tmp, 'no-clip');
    await mkdir(path.join(noClip, 'tokenizer_2'), { recursive: true });
    await expectTokenizerError(loadTokenizers(noClip), /has no tokenizer\/ folder; expected tokenizer\/vocab\.json and tokenizer\/merges\.txt/);
    const noMerges = path.join(tmp, 'no-merges');
    await mkdir(noMerges, { recursive: true });
    await cp(path.join(CLIP_DIR, 'vocab.json'), path.join(noMerges, 'vocab.json'));
    await expectTokenizerError(loadClipTokenizer(noMerges), /no-merges lacks merges\.txt; expected vocab\.json and merges\.txt/);
  });

  it('rejects a broken vocab.json and a non-unigram tokenizer.json', async () => {
    const broken = path.join(tmp, 'broken-clip');
    await mkdir(broken, { recursive: true });
    await writeFile(path.join(broken, 'vocab.json'), '{"a": 1');
    await writeFile(path.join(broken, 'merges.txt'), '#version: 0.2\n');
    await expectTokenizerError(loadClipTokenizer(broken), /vocab\.json: not valid JSON/);
    const bpe = path.join(tmp, 'bpe.json');
    await writeFile(bpe, JSON.stringify({ model: { type: 'BPE', vocab: {} } }));
    await expectTokenizerError(loadT5TokenizerJson(bpe), /does not hold a Unigram model \(found BPE\)/);
  });
});
