/**
 * `pnpm flux inspect PATH [--json]`: what a checkpoint file, sharded index or model folder holds, from headers only.
 * Exit 0 when everything could be read (missing / unexpected / mismatched keys are reported, not errors);
 * an unreadable or malformed file is a FluxError that main.ts prints as one `error:` line (exit 1).
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';

import { formatInspectReport, inspectPath } from '@flux-ts/flux';

const USAGE = `usage: pnpm flux inspect PATH [--json]

PATH is a .safetensors file, a *.safetensors.index.json, or a model folder (diffusers layout with
model_index.json, or a component folder such as transformer/). Only headers are read.

options:
  --json       print one JSON object (format, variant, tensors, parameters, dtypes, missing,
               unexpected, mismatched; components for a folder)
  -h, --help   show this help`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    });
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : e}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new FluxError('INVALID_ARGUMENT', `inspect takes exactly one PATH, got ${positionals.length}\n\n${USAGE}`);
  }
  const report = await inspectPath(positionals[0]);
  console.log(values.json ? JSON.stringify(report, null, 2) : formatInspectReport(report));
  return 0;
}
