/** Test helpers for the server: start/stop on 127.0.0.1:0, curl-style multipart, a slow fake generator. */
import { execFile } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { FluxError } from '@flux-ts/core';
import { encodePng } from '@flux-ts/flux';
import { createServer, type FluxServer, type Generator, type GenerationInput, type GenerationOutput, type ServerOptions } from '../src/index.ts';

export const TINY_MODEL = new URL('../../../test/fixtures/pipeline/tiny-flux', import.meta.url).pathname;
export const SCHNELL = '/v1/inference/black-forest-labs/FLUX-1-schnell';

export async function start(opts: ServerOptions): Promise<{ server: FluxServer; url: string }> {
  const server = await createServer({ logger: false, defaultMetrics: false, ...opts });
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, url };
}

export const HAS_CURL = (() => {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/**
 * POSTs `-F name=value` fields exactly as curl does (spawning curl when installed, else the same multipart
 * body through fetch's FormData). A value starting with @ is a file upload, < a field read from a file, as with curl.
 */
export async function curlForm(
  url: string,
  fields: [string, string][],
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; headers: Record<string, string> }> {
  if (HAS_CURL) {
    const args = ['-s', '-S', '-X', 'POST', '-D', '-', '--max-time', '60'];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    for (const [k, v] of fields) args.push('-F', `${k}=${v}`);
    args.push(url);
    const out = await new Promise<string>((resolve, reject) =>
      execFile('curl', args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    const split = out.indexOf('\r\n\r\n');
    const head = out.slice(0, split).split('\r\n');
    const status = Number(head[0]!.split(' ')[1]);
    const hs: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      hs[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const text = out.slice(split + 4);
    return { status, headers: hs, body: text ? JSON.parse(text) : undefined };
  }
  const { readFile } = await import('node:fs/promises');
  const form = new FormData();
  for (const [k, v] of fields) {
    if (v.startsWith('<')) form.append(k, await readFile(v.slice(1), 'utf8'));
    else if (v.startsWith('@')) form.append(k, new Blob([await readFile(v.slice(1))], { type: 'image/png' }), v.slice(1).split('/').pop());
    else form.append(k, v);
  }
  const res = await fetch(url, { method: 'POST', body: form, headers });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.json() };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  const text = await res.text();
  return { status: res.status, headers: Object.fromEntries(res.headers), body: text ? JSON.parse(text) : undefined };
}

/** PNG width and height from the IHDR chunk of a data URI or base64 string. */
export function pngSize(uriOrB64: string): { width: number; height: number; bytes: Buffer } {
  const b = Buffer.from(uriOrB64.slice(uriOrB64.indexOf(',') + 1), 'base64');
  expectPng(b);
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), bytes: b };
}

function expectPng(b: Buffer) {
  if (b.subarray(0, 8).toString('hex') !== '89504e470d0a1a0a') throw new Error('not a PNG');
}

const ONE_PIXEL = encodePng({ width: 1, height: 1, data: new Uint8Array([10, 20, 30]) });

/** A generator that takes `stepMs` per step, honours the abort signal between steps, and records its inputs. */
export class SlowGenerator implements Generator {
  readonly variant = 'schnell' as const;
  readonly seen: GenerationInput[] = [];
  aborted = 0;
  stepsRun = 0;
  readonly stepMs: number;
  constructor(stepMs = 50) {
    this.stepMs = stepMs;
  }
  async generate(input: GenerationInput, opts: { signal: AbortSignal; onStep: (p: { step: number; total: number }) => void }): Promise<GenerationOutput> {
    this.seen.push(input);
    const total = input.request.num_inference_steps;
    for (let i = 0; i < total; i++) {
      if (opts.signal.aborted) {
        this.aborted++;
        throw new FluxError('aborted', `generation aborted after ${i} of ${total} steps`);
      }
      await new Promise((r) => setTimeout(r, this.stepMs));
      this.stepsRun++;
      opts.onStep({ step: i + 1, total });
    }
    return { pngs: Array.from({ length: input.request.num_images }, () => ONE_PIXEL), seed: input.request.seed, tokensInput: 3 };
  }
}

/** Reads a server-sent event stream until `until` returns true or the stream ends. */
export async function readEvents(url: string, headers: Record<string, string>, until: (type: string) => boolean) {
  const res = await fetch(url, { headers });
  const events: { type: string; data: any }[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const type = /^event: (.*)$/m.exec(chunk)?.[1];
      const data = /^data: (.*)$/m.exec(chunk)?.[1];
      if (type && data) events.push({ type, data: JSON.parse(data) });
      if (type && until(type)) {
        await reader.cancel();
        return { status: res.status, contentType: res.headers.get('content-type'), events };
      }
    }
  }
  return { status: res.status, contentType: res.headers.get('content-type'), events };
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<any> {
  return (await fetch(url, { headers })).json();
}
