/**
 * `pnpm flux backend [--backend auto|tensorflow|wasm|cpu] [--json]`: which tensor backend a run would
 * use, its versions, and why each better one is unavailable.
 */
import { parseArgs } from 'node:util';
import { FluxError } from '@flux-ts/core';
import { initBackend, listBackends, parseBackendChoice, type BackendInfo } from '@flux-ts/flux';

const USAGE = `usage: pnpm flux backend [--backend auto|tensorflow|wasm|cpu] [--json]

Shows the tensor backend that a run would use (the same choice every command makes), the
TensorFlow.js and TensorFlow versions, and why each better backend is not available.

options:
  --backend B   auto (default: FLUX_BACKEND, else auto), tensorflow, wasm or cpu
  --json        print one JSON object instead of text
  -h, --help    show this help`;

export async function run(argv: string[]): Promise<number> {
  let values: { backend?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        backend: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const backend =
    values.backend !== undefined
      ? parseBackendChoice(values.backend, '--backend')
      : parseBackendChoice(process.env.FLUX_BACKEND, 'FLUX_BACKEND');

  const info = await initBackend({ backend, quiet: true });
  const candidates = await listBackends();

  if (values.json) {
    console.log(JSON.stringify({ ...info, candidates }, null, 2));
    return 0;
  }
  console.log(report(info, candidates));
  return 0;
}

function report(info: BackendInfo, candidates: Awaited<ReturnType<typeof listBackends>>): string {
  const lines = [
    `backend:     ${info.name} (${info.device})${info.requested === 'auto' ? ', chosen automatically' : ', as requested'}`,
    `package:     ${info.package}`,
    `tfjs-core:   ${info.tfjsVersion}`,
  ];
  if (info.tensorflowVersion) lines.push(`TensorFlow:  ${info.tensorflowVersion} (libtensorflow)`);
  if (info.reason) lines.push(`note:        ${info.reason}`);
  lines.push('', 'candidates, best first (auto never picks cpu):');
  for (const c of candidates) {
    const chosen = c.candidate === info.name && (info.name !== 'tensorflow' || c.package === info.package);
    const mark = chosen ? '*' : c.available ? ' ' : '-';
    lines.push(`  ${mark} ${c.candidate.padEnd(11)} ${`${c.package}${c.version ? `@${c.version}` : ''}`.padEnd(38)} ${c.detail}`);
  }
  lines.push('', '  * in use   - unavailable');
  return lines.join('\n');
}
