/**
 * `pnpm flux backend [--backend auto|tensorflow|wasm|cpu] [--json]`: which tensor backend a run would
 * use, its versions, and why each better one is unavailable.
 */
import type { CommandSpec } from '../command.ts';
import { flag, RUNTIME_OPTIONS, str } from '../options.ts';
import { initBackend, listBackends, parseBackendChoice, type BackendInfo } from '@flux-ts/flux';

export const command: CommandSpec = {
  name: 'backend',
  usage: '[--backend auto|tensorflow|wasm|cpu] [--json]',
  description: 'Shows the tensor backend that a run would use (the same choice every command makes), the TensorFlow.js and TensorFlow versions, and why each better backend is not available.',
  groups: [
    { title: 'backend', options: [RUNTIME_OPTIONS.options.find((o) => o.name === 'backend')!] },
    { title: 'output', options: [{ name: 'json', type: 'boolean', help: 'print one JSON object instead of text' }] },
  ],
  async run(args) {
    const given = str(args, 'backend');
    const backend = given !== undefined ? parseBackendChoice(given, '--backend') : parseBackendChoice(process.env.FLUX_BACKEND, 'FLUX_BACKEND');
    const info = await initBackend({ backend, quiet: true });
    const candidates = await listBackends();
    if (flag(args, 'json')) {
      console.log(JSON.stringify({ ...info, candidates }, null, 2));
      return 0;
    }
    console.log(report(info, candidates));
    return 0;
  },
};

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
