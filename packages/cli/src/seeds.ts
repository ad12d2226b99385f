/** Seeds as the user types them: `--seed S` (several: `--seed 1 2 3`), `--seeds 1,2,3`; negative ones wrap as torch's. */
import { FluxError, normalizeSeed } from '@flux-ts/core';
import { flagOf, usageError, type ParsedArgs } from './command.ts';

/** One seed, checked as torch.Generator.manual_seed checks it; the message names the flag typed. */
export function seedValue(args: ParsedArgs, raw: string, command: string, name = 'seed'): bigint {
  try {
    return normalizeSeed(raw);
  } catch (e) {
    if (e instanceof FluxError) throw usageError(command, `${flagOf(args, name)}: ${e.message}`);
    throw e;
  }
}

/** The seeds of `--seed S ...` or `--seeds A,B,C` (not both), each checked; undefined when neither was given. */
export function seedsOption(args: ParsedArgs, command: string): bigint[] | undefined {
  const one = args.values.seed as string[] | undefined;
  const list = args.values.seeds as string | undefined;
  if (one !== undefined && list !== undefined) throw usageError(command, `give the seeds with ${flagOf(args, 'seed')} or --seeds, not both`);
  if (one !== undefined) return one.map((s) => seedValue(args, s, command));
  if (list === undefined) return undefined;
  const parts = list.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw usageError(command, `--seeds takes a comma-separated list of integers, e.g. 1,2,3; got "${list}"`);
  return parts.map((s) => seedValue(args, s, command, 'seeds'));
}
