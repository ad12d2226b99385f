/** `pnpm flux tokenize` end to end: the CLI run as a child process (tsx) on the committed tokenizer fixtures. */
import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runFlux, type CliResult } from '../../../test/harness/run-cli.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/tokenizers');
const table = JSON.parse(readFileSync(join(FIX, 'prompts.json'), 'utf8')) as {
  cases: { text: string; clip: number[]; clip_full_length: number; t5: number[]; t5_full_length: number }[];
};
let tmp: string;
let model: string;

function flux(args: string[]): Promise<CliResult> {
  return runFlux(['tokenize', ...args]);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'flux-tokenize-cli-'));
  model = join(tmp, 'FLUX.1-schnell');
  await cp(join(FIX, 'clip'), join(model, 'tokenizer'), { recursive: true });
  await cp(join(FIX, 't5'), join(model, 'tokenizer_2'), { recursive: true });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('pnpm flux tokenize', () => {
  it('--json gives the full padded id sequences of the reference', async () => {
    const c = table.cases.find((x) => x.clip_full_length > 77 && x.t5_full_length <= 256)!;
    const r = await flux(['--model', model, '--prompt', c.text, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.clip.ids).toEqual(c.clip);
    expect(out.clip.truncated).toBe(true);
    expect(out.clip.tokens.length).toBe(77);
    expect(out.clip.tokens[0]).toBe('<|startoftext|>');
    expect(out.t5.ids).toEqual(c.t5);
    expect(out.t5.truncated).toBe(false);
    expect(out.t5.ids.length).toBe(256);
  });

  it('prints a listing with the truncation marker and the dropped text (positional prompt)', async () => {
    const r = await flux(['--model', model, ...'photo '.repeat(74).trim().split(' '), 'red', 'fox']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('CLIP (tokenizer/): 77 of 77 positions used, TRUNCATED (78 needed)');
    expect(r.stdout).toMatch(/✂ truncated here: 1 token\(s\) dropped: "fox"/);
    expect(r.stdout).toContain('T5 (tokenizer_2/, length 256');
    expect(r.stdout).toContain('× <pad> (padding)');
  });

  it('uses 512 for a dev folder and --t5-length overrides', async () => {
    const dev = join(tmp, 'dev');
    await cp(model, dev, { recursive: true });
    await mkdir(join(dev, 'transformer'), { recursive: true });
    await writeFile(join(dev, 'transformer', 'config.json'), JSON.stringify({ guidance_embeds: true }));
    const r = JSON.parse((await flux(['--model', dev, '--prompt', 'a cat', '--json'])).stdout);
    expect(r.t5.ids.length).toBe(512);
    const s = JSON.parse((await flux(['--model', dev, '--prompt', 'a cat', '--json', '--t5-length', '32'])).stdout);
    expect(s.t5.ids.length).toBe(32);
  });

  it('fails with a readable error for a folder without tokenizer files and for bad options', async () => {
    const empty = join(tmp, 'empty');
    await mkdir(join(empty, 'tokenizer'), { recursive: true });
    await mkdir(join(empty, 'tokenizer_2'), { recursive: true });
    const r = await flux(['--model', empty, 'a cat']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: CLIP tokenizer folder .*tokenizer lacks vocab\.json and merges\.txt; expected vocab\.json and merges\.txt/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const noPrompt = await flux(['--model', model]);
    expect(noPrompt.code).toBe(2);
    expect(noPrompt.stderr).toContain('a prompt is required');
    const badLen = await flux(['--model', model, 'x', '--t5-length', 'abc']);
    expect(badLen.code).toBe(2);
    expect(badLen.stderr).toContain('--t5-length must be an integer from 1 to 512');
  });
});
