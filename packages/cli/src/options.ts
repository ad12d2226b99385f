/**
 * Option groups shared between commands, declared once (command.ts builds usage, help and parsing from them), and
 * the rules for the values they carry.
 */
import { FluxError } from '@flux-ts/core';
import type { OptionGroup, OptionSpec, ParsedArgs } from './command.ts';
import type { PrecisionChoice } from '@flux-ts/flux';

/** How the user runs this command: `pnpm flux` in a clone of the repository (its script), else `flux-ts`. */
export const PROGRAM = process.env.npm_lifecycle_event === 'flux' ? 'pnpm flux' : 'flux-ts';

export type CliResidency = 'auto' | 'streamed' | 'resident' | 'fp8';

/** `--model`: which FLUX.1 to run. */
export const MODEL_OPTION: OptionSpec = {
  name: 'model',
  short: 'm',
  type: 'string',
  arg: 'PATH',
  help: 'a diffusers FLUX.1 folder, a BFL flux1-*.safetensors file, a Hugging Face cache snapshot or a repo id in the cache (default: $FLUX_MODEL, else the cached black-forest-labs/FLUX.1-schnell; get it with `flux-ts download`)',
};

/** The model and, for BFL single files, its other components. */
export const MODEL_OPTIONS: OptionGroup = {
  title: 'model',
  options: [
    MODEL_OPTION,
    { name: 'vae', type: 'string', arg: 'FILE', help: 'BFL files: the autoencoder (default: the VAE checkpoint next to the model file, e.g. ae.safetensors)' },
    { name: 'text-encoders', type: 'string', arg: 'DIR', help: 'BFL files: a diffusers folder with the text encoders and tokenizers' },
  ],
};

/** The server and workers take one model or several (`--model` repeated). */
export const SERVED_MODELS_OPTIONS: OptionGroup = {
  title: 'model',
  options: [{ ...MODEL_OPTION, multiple: true, help: 'a FLUX.1 model (diffusers folder, BFL file, HF cache snapshot or repo id); give it twice for a schnell and a dev model (default: $FLUX_MODEL)' }],
};

/** Where and how the models run: one group for every command that runs a model. */
export const RUNTIME_OPTIONS: OptionGroup = {
  title: 'backend and memory',
  options: [
    { name: 'backend', type: 'string', arg: 'B', choices: ['auto', 'tensorflow', 'wasm', 'cpu'], help: 'tensor backend: auto (default: $FLUX_BACKEND, else the best available), tensorflow, wasm or cpu' },
    { name: 'residency', type: 'string', arg: 'R', choices: ['auto', 'streamed', 'resident', 'fp8'], help: 'transformer weights: auto (default: resident on a GPU; in bf16 on a CPU resident, fp8 or streamed by the machine\'s memory; else streamed), streamed, resident (23.8 GB in bf16, ~48 GB in float32), or fp8 (kept as e4m3, 11.9 GB; bf16 only)' },
    { name: 'precision', type: 'string', arg: 'P', choices: ['auto', 'bf16', 'fp32'], help: 'auto (default: bf16 on the tensorflow backend, fp32 elsewhere), bf16 (matmuls and convolutions in bf16, about 2x faster on CPUs with AVX512_BF16), or fp32 (seed-for-seed with diffusers in float32)' },
  ],
};

/** `--precision` (default auto). */
export function precisionOption(args: ParsedArgs): PrecisionChoice {
  return (str(args, 'precision') ?? 'auto') as PrecisionChoice;
}

/** `--model` values (repeatable), else $FLUX_MODEL; at least one is required. */
export function modelsOption(args: ParsedArgs, command: string, what = 'the model'): string[] {
  const given = args.values.model;
  const models = given === undefined ? (process.env.FLUX_MODEL ? [process.env.FLUX_MODEL] : []) : Array.isArray(given) ? (given as string[]) : [given as string];
  if (models.length === 0) throw new FluxError('INVALID_ARGUMENT', `give ${what}: --model PATH (or set FLUX_MODEL); see ${PROGRAM} ${command} --help`);
  return models;
}

/** A string option's value, or undefined. */
export function str(args: ParsedArgs, name: string): string | undefined {
  return args.values[name] as string | undefined;
}

/** A number option's value, or `def`. */
export function num(args: ParsedArgs, name: string, def: number): number {
  return (args.values[name] as number | undefined) ?? def;
}

/** A boolean option: true when given. */
export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}
