#!/usr/bin/env node
/**
 * `flux-ts <command> ...` (`pnpm flux ...` in a clone): parse, call the library, write files. No model logic lives
 * here. Each command is a module in ./commands exporting `command`, its declaration (command.ts): option table and
 * body. Exit codes: 0 done, 1 an error (one `error:` line), 2 a usage error (a bad argument); with `--json` an
 * error is one JSON object on stdout, `{"error": {"code", "message"}}`.
 */
import { readFileSync } from 'node:fs';
import { isFluxError } from '@flux-ts/core';
import { runCommand, type CommandSpec } from './command.ts';
import { PROGRAM } from './options.ts';

/** This command's version (packages/cli/package.json). */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type Command = { summary: string; load: () => Promise<{ command: CommandSpec }> };

const COMMANDS: Record<string, Command> = {
  generate: { summary: 'generate images from a prompt (text-to-image, image-to-image), PNG or JPEG files with their parameters', load: () => import('./commands/generate.ts') },
  inspect: { summary: 'inspect a checkpoint file, index or model folder (headers only)', load: () => import('./commands/inspect.ts') },
  noise: { summary: 'write torch-compatible seeded noise to a safetensors file', load: () => import('./commands/noise.ts') },
  tokenize: { summary: 'show how a prompt is tokenized for CLIP and T5, and where it is truncated', load: () => import('./commands/tokenize.ts') },
  backend: { summary: 'show which tensor backend would be used and why', load: () => import('./commands/backend.ts') },
  download: { summary: 'download FLUX weights from the Hugging Face hub into the HF cache (resumable)', load: () => import('./commands/download.ts') },
  serve: { summary: 'serve FLUX.1 over HTTP (DeepInfra-compatible API, OpenAI images endpoint)', load: () => import('./commands/serve.ts') },
  worker: { summary: 'take generation jobs from a shared Redis queue (for serve --redis)', load: () => import('./commands/worker.ts') },
  'setup-native': { summary: 'build the native CPU backend (TensorFlow C library from PyPI, tfjs-node addon)', load: () => import('./commands/setup-native.ts') },
};

function usage(): string {
  const lines = [`usage: ${PROGRAM} <command> [options]`, '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  lines.push('', `Run \`${PROGRAM} <command> --help\` for the options of one command; \`${PROGRAM} --version\` for the version.`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`flux-ts ${VERSION} (Node ${process.versions.node})`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`error: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const mod = await command.load();
  return runCommand(mod.command, rest, command.summary);
}

/** `--json` among the options (before a `--`): errors go to stdout as JSON too. */
const argv = process.argv.slice(2);
const json = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length).includes('--json');

function fail(code: string, message: string, exit: number): void {
  if (json) console.log(JSON.stringify({ error: { code, message } }));
  else console.error(`error: ${message}`);
  process.exitCode = exit;
}

// A closed stdout (`pnpm flux --help | head -1`) ends the output, not the process with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

main(argv).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (isFluxError(err)) {
      fail(err.code, err.message, err.code === 'INVALID_ARGUMENT' ? 2 : 1);
    } else if (process.env.FLUX_DEBUG) {
      console.error(err);
      process.exitCode = 1;
    } else {
      const msg = err instanceof Error ? err.message : String(err);
      fail('INTERNAL', `internal error: ${msg.split('\n')[0]} (set FLUX_DEBUG=1 for the stack trace, and please report it)`, 1);
    }
  },
);
