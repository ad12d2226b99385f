/**
 * `pnpm flux tokenize --model PATH --prompt "..." [--json] [--t5-length N]`
 * Shows how a prompt is tokenized for CLIP (77 tokens) and T5 (256 schnell / 512 dev), and where it is cut.
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';
// NOTE: direct path until @flux-ts/flux's index.ts exports ./tokenizers.ts
import { loadTokenizers, type TokenizedPrompt } from '@flux-ts/flux';

const HELP = `usage: pnpm flux tokenize --model PATH --prompt "a photo of a cat" [options]
       pnpm flux tokenize --model PATH "a photo of a cat"

Show how a prompt is tokenized for FLUX.1's two text encoders, exactly as the diffusers pipelines do it:
CLIP (tokenizer/: vocab.json + merges.txt) gets 77 tokens, T5 (tokenizer_2/: tokenizer.json or spiece.model)
gets 256 (schnell) or 512 (dev). Tokens past the limit are dropped; the listing shows where.

options:
  --model      diffusers-layout FLUX.1 folder (with tokenizer/ and tokenizer_2/)
  --prompt     the prompt (or give it as positional arguments)
  --t5-length  T5 sequence length (default: 512 when transformer/config.json has guidance_embeds, else 256)
  --json       print {"clip": {ids, tokens, truncated, ...}, "t5": {...}}; ids are the full padded sequences
  --help       show this help`;

function summary(r: TokenizedPrompt, maxLength: number) {
  return {
    ids: r.ids,
    tokens: r.tokens,
    truncated: r.truncated,
    maxLength,
    length: r.length,
    fullLength: r.fullLength,
    droppedText: r.droppedText,
  };
}

function listing(title: string, r: TokenizedPrompt, padToken: string, specials: Set<number>): string {
  const maxLength = r.ids.length;
  const lines = [`${title}: ${r.length} of ${maxLength} positions used` + (r.truncated ? `, TRUNCATED (${r.fullLength} needed)` : '')];
  const cells: string[] = [];
  for (let i = 0; i < r.length; i++) {
    const id = r.ids[i]!;
    const tok = JSON.stringify(r.tokens[i]).slice(1, -1);
    cells.push(specials.has(id) ? `[${tok}]` : `${tok}(${id})`);
  }
  // the cut falls before the last kept special (EOS) for both encoders
  const cutAt = r.truncated ? r.length - 1 : -1;
  let line = '   ';
  cells.forEach((cell, i) => {
    if (i === cutAt) {
      lines.push(line);
      line = '   ';
      lines.push(`   ✂ truncated here: ${r.droppedIds.length} token(s) dropped: ${JSON.stringify(r.droppedText)}`);
    }
    if (line.length + cell.length + 1 > 100 && line.trim().length > 0) {
      lines.push(line);
      line = '   ';
    }
    line += ` ${cell}`;
  });
  if (line.trim().length > 0) lines.push(line);
  const pad = maxLength - r.length;
  if (pad > 0) lines.push(`    + ${pad} × ${padToken} (padding)`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string', short: 'm' },
        prompt: { type: 'string', short: 'p' },
        't5-length': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${(e as Error).message}\n\n${HELP}`);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (typeof values.model !== 'string' || values.model === '') {
    throw new FluxError('INVALID_ARGUMENT', `--model is required\n\n${HELP}`);
  }
  if (typeof values.prompt === 'string' && positionals.length > 0) {
    throw new FluxError('INVALID_ARGUMENT', 'give the prompt either with --prompt or as positional text, not both');
  }
  const prompt = typeof values.prompt === 'string' ? values.prompt : positionals.length > 0 ? positionals.join(' ') : undefined;
  if (prompt === undefined) throw new FluxError('INVALID_ARGUMENT', `a prompt is required (--prompt "..." or positional)\n\n${HELP}`);
  let t5Length: number | undefined;
  if (typeof values['t5-length'] === 'string') {
    const s = values['t5-length'];
    t5Length = /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(t5Length) || t5Length < 1 || t5Length > 512) {
      throw new FluxError('INVALID_ARGUMENT', `--t5-length must be an integer from 1 to 512, got "${s}"`);
    }
  }

  const tk = await loadTokenizers(values.model, { t5Length });
  const clip = tk.clip.tokenize(prompt);
  const t5 = tk.t5.tokenize(prompt);
  if (values.json) {
    console.log(JSON.stringify({ clip: summary(clip, tk.clip.maxLength), t5: summary(t5, tk.t5Length) }));
    return 0;
  }
  console.log(`prompt: ${JSON.stringify(prompt)}\n`);
  console.log(listing('CLIP (tokenizer/)', clip, tk.clip.idToTokenString(tk.clip.padId), new Set([tk.clip.bosId, tk.clip.eosId])));
  console.log('');
  console.log(listing(`T5 (tokenizer_2/, length ${tk.t5Length}: ${tk.t5LengthReason})`, t5, tk.t5.idToToken(tk.t5.padId), new Set([tk.t5.eosId, tk.t5.padId])));
  return 0;
}
