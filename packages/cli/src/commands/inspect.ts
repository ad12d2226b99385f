/**
 * `pnpm flux inspect PATH [--json]`: what a checkpoint file, sharded index or model folder holds, from headers only.
 * Exit 0 when everything could be read (missing / unexpected / mismatched keys are reported, not errors);
 * an unreadable or malformed file is a FluxError that main.ts prints as one `error:` line (exit 1).
 */
import type { CommandSpec } from '../command.ts';
import { usageError } from '../command.ts';
import { flag } from '../options.ts';
import { formatInspectReport, inspectPath } from '@flux-ts/flux';

export const command: CommandSpec = {
  name: 'inspect',
  usage: 'PATH [--json]',
  description: 'PATH is a .safetensors file, a *.safetensors.index.json, or a model folder (diffusers layout with model_index.json, or a component folder such as transformer/). Only headers are read.',
  positionals: { max: 1, name: 'PATH' },
  groups: [
    { title: 'output', options: [{ name: 'json', type: 'boolean', help: 'print one JSON object (format, variant, tensors, parameters, dtypes, missing, unexpected, mismatched; components for a folder)' }] },
  ],
  async run(args) {
    if (args.positionals.length !== 1) throw usageError('inspect', 'inspect takes exactly one PATH, got none');
    const report = await inspectPath(args.positionals[0]!);
    console.log(flag(args, 'json') ? JSON.stringify(report, null, 2) : formatInspectReport(report));
    return 0;
  },
};
