/**
 * `pnpm flux tokenize --model PATH --prompt "..." [--json] [--t5-length N]`
 * Shows how a prompt is tokenized for CLIP (77 tokens) and T5 (256 schnell / 512 dev), and where it is cut.
 */
import type { CommandSpec } from '../command.ts';
import { usageError } from '../command.ts';
import { flag, MODEL_OPTION, str } from '../options.ts';
import { loadTokenizers, type TokenizedPrompt } from '@flux-ts/flux';

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

export const command: CommandSpec = {
  name: 'tokenize',
  usage: '--model PATH [PROMPT] [options]',
  description: "Show how a prompt is tokenized for FLUX.1's two text encoders, exactly as the diffusers pipelines do it: CLIP (tokenizer/: vocab.json + merges.txt) gets 77 tokens, T5 (tokenizer_2/: tokenizer.json or spiece.model) gets 256 (schnell) or 512 (dev). Tokens past the limit are dropped; the listing shows where.",
  positionals: { max: Infinity, name: 'prompt words' },
  groups: [
    { title: 'model', options: [{ ...MODEL_OPTION, help: 'diffusers-layout FLUX.1 folder (with tokenizer/ and tokenizer_2/)' }] },
    {
      title: 'prompt',
      options: [
        { name: 'prompt', short: 'p', type: 'string', arg: 'TEXT', help: 'the prompt (or give it as positional arguments)' },
        { name: 't5-length', type: 'integer', arg: 'N', min: 1, max: 512, help: 'T5 sequence length (default: 512 when transformer/config.json has guidance_embeds, else 256)' },
      ],
    },
    { title: 'output', options: [{ name: 'json', type: 'boolean', help: 'print {"clip": {ids, tokens, truncated, ...}, "t5": {...}}; ids are the full padded sequences' }] },
  ],
  async run(args) {
    const model = str(args, 'model');
    if (!model) throw usageError('tokenize', '--model is required');
    const given = str(args, 'prompt');
    if (given !== undefined && args.positionals.length > 0) throw usageError('tokenize', 'give the prompt either with --prompt or as positional text, not both');
    const prompt = given ?? (args.positionals.length > 0 ? args.positionals.join(' ') : undefined);
    if (prompt === undefined) throw usageError('tokenize', 'a prompt is required (--prompt "..." or positional)');
    const t5Length = args.values['t5-length'] as number | undefined;
    const tk = await loadTokenizers(model, { t5Length });
    const clip = tk.clip.tokenize(prompt);
    const t5 = tk.t5.tokenize(prompt);
    if (flag(args, 'json')) {
      console.log(JSON.stringify({ clip: summary(clip, tk.clip.maxLength), t5: summary(t5, tk.t5Length) }));
      return 0;
    }
    console.log(`prompt: ${JSON.stringify(prompt)}\n`);
    console.log(listing('CLIP (tokenizer/)', clip, tk.clip.idToTokenString(tk.clip.padId), new Set([tk.clip.bosId, tk.clip.eosId])));
    console.log('');
    console.log(listing(`T5 (tokenizer_2/, length ${tk.t5Length}: ${tk.t5LengthReason})`, t5, tk.t5.idToToken(tk.t5.padId), new Set([tk.t5.eosId, tk.t5.padId])));
    return 0;
  },
};
