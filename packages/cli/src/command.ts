/**
 * The CLI's one command helper: a command is declared as data (its option table, in groups, some shared between
 * commands: options.ts) plus a body. From the table this builds the usage and `--help`, parses the arguments, and
 * reports a bad argument as one line (FluxError INVALID_ARGUMENT, exit 2) naming the flag as the user typed it.
 * The shape of candle's `#[derive(Parser)]` and mflux's shared `add_*_arguments`: options declared once, usage
 * generated.
 *
 * Parsing rules: `--name value`, `--name=value`, `-x value`; a negative number is a value (`--seed -5`); a
 * `variadic` option takes every following value up to the next option (`--seed 1 2 3`); `--` ends the options.
 */
import { FluxError } from '@flux-ts/core';
import { PROGRAM } from './options.ts';

export type OptionType = 'string' | 'boolean' | 'number' | 'integer';

export interface OptionSpec {
  /** The canonical long name (the key of the parsed value). */
  name: string;
  /** Other long names that mean the same (`out` for `output`). */
  aliases?: readonly string[];
  /** One letter (`o` for `-o`). */
  short?: string;
  type: OptionType;
  /** The value's placeholder in the help (default: N for numbers, VALUE for strings). */
  arg?: string;
  help: string;
  /** Given more than once: every value, in order. */
  multiple?: boolean;
  /**
   * Several values after one flag (`--seed 1 2 3`); implies multiple. The values after the first are taken only
   * while they match `more` (so `--seed 5 "a prompt"` leaves the prompt a positional).
   */
  variadic?: boolean;
  more?: RegExp;
  /** The only values allowed (strings). */
  choices?: readonly string[];
  /** Range of a number or integer. */
  min?: number;
  max?: number;
}

export interface OptionGroup {
  title: string;
  options: readonly OptionSpec[];
}

export type OptionValue = string | number | boolean | string[] | number[];

export interface ParsedArgs {
  /** By canonical name; absent when not given. */
  values: Record<string, OptionValue | undefined>;
  positionals: string[];
  /** The flag as typed for each option given (`-o`, `--out`), for messages. */
  typed: Record<string, string>;
}

export interface CommandSpec {
  name: string;
  /** After the command in the usage line, e.g. `[PROMPT] [options]`. */
  usage: string;
  /** Paragraphs under the usage line. */
  description: string;
  groups: readonly OptionGroup[];
  /** How many positionals are allowed (default 0) and what they are called in messages. */
  positionals?: { max: number; name: string };
  /** Text after the options (environment variables, examples). */
  epilog?: string;
  run(args: ParsedArgs): Promise<number>;
}

const HELP: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'show this help' };

/** Every option of a command, the generated `--help` included. */
function allOptions(spec: CommandSpec): OptionSpec[] {
  return [...spec.groups.flatMap((g) => g.options), HELP];
}

/** A FluxError INVALID_ARGUMENT pointing at the command's help. */
export function usageError(command: string, message: string): FluxError {
  return new FluxError('INVALID_ARGUMENT', `${message}; see ${PROGRAM} ${command} --help`);
}

/** The flag a user typed for `name` (else its canonical `--name`), for messages about the value. */
export function flagOf(args: ParsedArgs, name: string): string {
  return args.typed[name] ?? `--${name}`;
}

/** The known name within two edits of `name` (a typo), if any. */
function nearest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d: number[] = Array.from({ length: k.length + 1 }, (_, j) => j);
    for (let i = 1; i <= name.length; i++) {
      let prev = d[0]!;
      d[0] = i;
      for (let j = 1; j <= k.length; j++) {
        const t = d[j]!;
        d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (name[i - 1] === k[j - 1] ? 0 : 1));
        prev = t;
      }
    }
    if (d[k.length]! < bestD) {
      bestD = d[k.length]!;
      best = k;
    }
  }
  return best;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function convert(command: string, o: OptionSpec, flag: string, raw: string): string | number {
  if (o.type === 'string') {
    if (o.choices && !o.choices.includes(raw)) throw usageError(command, `${flag} must be one of ${o.choices.join(', ')}, got "${raw}"`);
    return raw;
  }
  const range = o.min !== undefined && o.max !== undefined ? ` from ${o.min} to ${o.max}` : o.min !== undefined ? ` >= ${o.min}` : o.max !== undefined ? ` <= ${o.max}` : '';
  const what = o.type === 'integer' ? `an integer${range}` : `a number${range}`;
  const v = NUMBER.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isFinite(v) || (o.type === 'integer' && !Number.isInteger(v)) || (o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) {
    throw usageError(command, `${flag} must be ${what}, got "${raw}"`);
  }
  return v;
}

/** Parses `argv` against the command's table (no side effects; `--help` is a value like any other). */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const options = allOptions(spec);
  const byLong = new Map<string, OptionSpec>();
  const byShort = new Map<string, OptionSpec>();
  for (const o of options) {
    for (const n of [o.name, ...(o.aliases ?? [])]) byLong.set(n, o);
    if (o.short) byShort.set(o.short, o);
  }
  const values: Record<string, OptionValue | undefined> = {};
  const typed: Record<string, string> = {};
  const positionals: string[] = [];
  const isValue = (t: string | undefined) => t !== undefined && (!t.startsWith('-') || t === '-' || NUMBER.test(t));
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!tok.startsWith('-') || tok === '-' || NUMBER.test(tok)) {
      positionals.push(tok);
      continue;
    }
    let flag = tok;
    let inline: string | undefined;
    let o: OptionSpec | undefined;
    if (tok.startsWith('--')) {
      const eq = tok.indexOf('=');
      if (eq > 0) {
        flag = tok.slice(0, eq);
        inline = tok.slice(eq + 1);
      }
      o = byLong.get(flag.slice(2));
      if (!o) {
        const near = nearest(flag.slice(2), [...byLong.keys()]);
        throw usageError(spec.name, `unknown option ${flag}${near ? ` (did you mean --${near}?)` : ''}`);
      }
    } else {
      flag = tok.slice(0, 2);
      if (tok.length > 2) inline = tok.slice(2);
      o = byShort.get(tok.slice(1, 2));
      if (!o) throw usageError(spec.name, `unknown option ${flag}`);
    }
    if (typed[o.name] !== undefined && !o.multiple && !o.variadic) {
      throw usageError(spec.name, `${flag} given twice${typed[o.name] !== flag ? ` (as ${typed[o.name]} and ${flag})` : ''}`);
    }
    typed[o.name] ??= flag;
    if (o.type === 'boolean') {
      if (inline !== undefined) throw usageError(spec.name, `${flag} takes no value, got "${inline}"`);
      values[o.name] = true;
      continue;
    }
    const raws: string[] = [];
    if (inline !== undefined) raws.push(inline);
    else if (isValue(argv[i + 1])) raws.push(argv[++i]!);
    else throw usageError(spec.name, `${flag} needs a value${o.arg ? ` (${o.arg})` : ''}`);
    if (o.variadic) while (isValue(argv[i + 1]) && (o.more ?? /(?:)/).test(argv[i + 1]!)) raws.push(argv[++i]!);
    const converted = raws.map((r) => convert(spec.name, o, flag, r));
    if (o.multiple || o.variadic) values[o.name] = [...((values[o.name] as (string | number)[] | undefined) ?? []), ...converted] as OptionValue;
    else values[o.name] = converted[0]!;
  }
  const max = spec.positionals?.max ?? 0;
  if (positionals.length > max) {
    throw usageError(spec.name, max === 0
      ? `${spec.name} takes no arguments, got ${positionals.map((p) => JSON.stringify(p)).join(' ')}`
      : `expected at most ${max} ${spec.positionals!.name}, got ${positionals.length}${max === 1 ? ' (quote it)' : ''}`);
  }
  return { values, positionals, typed };
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(' ')) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
  }
  return lines;
}

/** The `--help` text, generated from the table. */
export function formatHelp(spec: CommandSpec, summary?: string): string {
  const col = 28;
  const width = 100;
  const out = [`usage: ${PROGRAM} ${spec.name} ${spec.usage}`, ''];
  if (spec.description) out.push(...wrap(spec.description, width), '');
  else if (summary) out.push(`${summary[0]!.toUpperCase()}${summary.slice(1)}.`, '');
  const groups = [...spec.groups, { title: 'general', options: [HELP] }];
  for (const g of groups) {
    out.push(`${g.title}:`);
    for (const o of g.options) {
      const arg = o.type === 'boolean' ? '' : ` ${o.arg ?? (o.type === 'string' ? 'VALUE' : 'N')}${o.variadic ? ' ...' : ''}`;
      const names = [...(o.short ? [`-${o.short}`] : []), `--${o.name}`, ...(o.aliases ?? []).map((a) => `--${a}`)].join(', ') + arg;
      const help = wrap(o.help + (o.choices && !o.help.includes(o.choices[0]!) ? ` (${o.choices.join(', ')})` : ''), width - col);
      const head = `  ${names}`;
      if (head.length < col) out.push(`${head.padEnd(col)}${help[0]}`);
      else out.push(head, `${' '.repeat(col)}${help[0]}`);
      for (const l of help.slice(1)) out.push(`${' '.repeat(col)}${l}`);
    }
    out.push('');
  }
  if (spec.epilog) out.push(...spec.epilog.split('\n'), '');
  return out.join('\n').trimEnd();
}

/** Parse, answer `--help`, run the body. */
export async function runCommand(spec: CommandSpec, argv: readonly string[], summary?: string): Promise<number> {
  const args = parseCommandLine(spec, argv);
  if (args.values.help) {
    console.log(formatHelp(spec, summary));
    return 0;
  }
  return spec.run(args);
}
