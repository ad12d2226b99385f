/**
 * The command helper (src/command.ts) over the real option tables: aliases, shorts, several seeds, negative
 * numbers, one-line errors naming the flag typed, and help generated from the tables.
 */
import { describe, expect, it } from 'vitest';
import { formatHelp, parseCommandLine } from '../src/command.ts';
import { command as generate } from '../src/commands/generate.ts';
import { command as serve } from '../src/commands/serve.ts';
import { command as worker } from '../src/commands/worker.ts';
import { RUNTIME_OPTIONS } from '../src/options.ts';
import { seedsOption } from '../src/seeds.ts';

const parse = (...argv: string[]) => parseCommandLine(generate, argv);

describe('parseCommandLine (generate)', () => {
  it('every alias means its option: --output/--out/-o, --image-path, --image-strength', () => {
    for (const o of ['--output', '--out', '-o']) expect(parse(o, 'a.png').values.output).toBe('a.png');
    expect(parse('--out=b.png').values.output).toBe('b.png');
    expect(parse('-ob.png').values.output).toBe('b.png');
    expect(parse('--image-path', 'in.png', '--image-strength', '0.3').values).toMatchObject({ image: 'in.png', strength: 0.3 });
    expect(parse('-i', 'in.png', '--strength', '0.3').values).toMatchObject({ image: 'in.png', strength: 0.3 });
    expect(parse('-p', 'x', '-m', 'M', '-W', '256', '-H', '128', '-g', '2', '-n', '2', '-q').values).toMatchObject({ prompt: 'x', model: 'M', width: 256, height: 128, guidance: 2, 'num-images': 2, quiet: true });
    expect(parse('--prompt-file', 'p.txt').values['prompt-file']).toBe('p.txt');
    expect(() => parse('--out', 'a.png', '-o', 'b.png')).toThrow(/-o given twice \(as --out and -o\)/);
  });

  it('-s is the seed (as in stable-diffusion.cpp), never the steps', () => {
    const a = parse('-s', '5');
    expect(a.values).toEqual({ seed: ['5'] });
    expect(a.values.steps).toBeUndefined();
    expect(parse('--steps', '3').values).toEqual({ steps: 3 });
  });

  it('several seeds: --seed 1 2 3, repeated --seed, --seeds 1,2,3; negative seeds are values', () => {
    const seeds = (...argv: string[]) => seedsOption(parse(...argv), 'generate')?.map(String);
    expect(seeds('--seed', '1', '2', '3')).toEqual(['1', '2', '3']);
    expect(parse('--seed', '1', '2', '3', '--steps', '2').values).toEqual({ seed: ['1', '2', '3'], steps: 2 });
    expect(seeds('--seed', '7', '--seed', '8')).toEqual(['7', '8']);
    expect(parse('--seed', '5', 'a cat', '--seed', '6', '-7')).toMatchObject({ values: { seed: ['5', '6', '-7'] }, positionals: ['a cat'] });
    expect(seeds('--seeds', '1,2,3')).toEqual(['1', '2', '3']);
    expect(seeds('--seed', '-5')).toEqual([(2n ** 64n - 5n).toString()]); // torch's wrap
    expect(seeds()).toBeUndefined();
    expect(() => seeds('--seed', '1', '--seeds', '2,3')).toThrow(/--seed or --seeds, not both/);
    expect(() => seeds('--seeds', '1,,2')).toThrow(/comma-separated list of integers/);
    expect(() => seeds('-s', '1.5')).toThrow(/^-s: seed "1.5" is not an integer/);
    expect(() => seeds('--seed', '18446744073709551616')).toThrow(/^--seed: seed 18446744073709551616 is out of range/);
  });

  it('bad arguments are one line naming the flag as typed, with INVALID_ARGUMENT', () => {
    const err = (...argv: string[]) => {
      try {
        parse(...argv);
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error('no error');
    };
    expect(err('--stpes', '3')).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^unknown option --stpes \(did you mean --steps\?\); see (flux-ts|pnpm flux) generate --help$/) });
    expect(err('-W', 'wide').message).toMatch(/^-W must be an integer, got "wide"/);
    expect(err('--steps', '0').message).toMatch(/^--steps must be an integer from 1 to 512, got "0"/);
    expect(err('--image-strength', '2').message).toMatch(/^--image-strength must be a number from 0 to 1, got "2"/);
    expect(err('--preview-mode', 'fast').message).toMatch(/^--preview-mode must be one of proj, vae, got "fast"/);
    expect(err('--seed').message).toMatch(/^--seed needs a value/);
    expect(err('--json=1').message).toMatch(/^--json takes no value/);
    expect(err('a', 'b').message).toMatch(/^expected at most 1 prompt argument, got 2 \(quote it\)/);
    expect(err('-x').message).toMatch(/^unknown option -x/);
    expect(parse('--', '-a prompt starting with a dash').positionals).toEqual(['-a prompt starting with a dash']);
  });
});

describe('help and shared groups', () => {
  it('help is generated from the table: every option with its aliases, shorts and groups', () => {
    const help = formatHelp(generate);
    expect(help).toMatch(/^usage: (flux-ts|pnpm flux) generate \[PROMPT\] \[options\]/);
    for (const line of ['-o, --output, --out FILE', '-i, --image, --image-path IN.png', '--strength, --image-strength X', '-s, --seed S ...', '--seeds A,B,C', '--prompt-file FILE', '--preview PATH', '-h, --help']) {
      expect(help).toContain(line);
    }
    for (const title of ['prompt:', 'image:', 'output:', 'model:', 'backend and memory:', 'general:']) expect(help).toContain(`\n${title}\n`);
    expect(help).not.toMatch(/-s, --steps/);
  });

  it('generate, serve and worker share the backend group (one table: a new runtime option lands in all three)', () => {
    for (const c of [generate, serve, worker]) expect(c.groups).toContain(RUNTIME_OPTIONS);
    expect(parseCommandLine(serve, ['--model', 'a', '--model', 'b', '--port', '0', '--no-auth']).values).toMatchObject({ model: ['a', 'b'], port: 0, 'no-auth': true });
    expect(() => parseCommandLine(worker, ['--concurrency', '0'])).toThrow(/^--concurrency must be an integer >= 1, got "0"/);
    expect(() => parseCommandLine(serve, ['--residency', 'sometimes'])).toThrow(/^--residency must be one of auto, streamed, resident/);
  });
});
