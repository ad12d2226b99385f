/**
 * A Hugging Face hub imitation on 127.0.0.1 for download tests (node:http, no network). Two servers:
 *   hub  GET /api/models/{repo}/revision/{rev}[?blobs=True]   -> { id, sha, siblings: [{ rfilename, size, blobId, lfs? }] }
 *        HEAD|GET /{repo}/resolve/{rev}/{path}                 regular file: 200 with ETag "<git blob sha1>";
 *                                                               LFS file: 302 to the CDN with X-Linked-Etag "<sha256>", X-Linked-Size
 *   cdn  GET /blobs/{sha256}                                   the LFS content (Range supported unless `ignoreRange`)
 * Modes (mutable between calls): `token` (gated: resolve needs `Authorization: Bearer <token>`), `dropAfter`
 * (the next `dropCount` content GETs close the connection after that many body bytes), `ignoreRange`,
 * `corrupt` (paths served with one byte flipped), `apiBlobs` (listing with sizes/etags; false -> HEAD needed).
 * `served` counts body bytes sent per path; `requests` logs every request (server, method, url, headers).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  path: string;
  content: Uint8Array;
  lfs?: boolean;
}

export interface FakeRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export const gitBlobSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.byteLength}\0`).update(b).digest('hex');
export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Deterministic pseudo-random bytes (so tests need no fixtures). */
export function fakeBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export class FakeHub {
  readonly repo: string;
  readonly commit: string;
  readonly files: FakeFile[];
  token: string | null = null;
  dropAfter: number | null = null;
  dropCount = 0;
  ignoreRange = false;
  corrupt = new Set<string>();
  apiBlobs = true;
  readonly served = new Map<string, number>();
  readonly requests: FakeRequest[] = [];
  private hub: Server;
  private cdn: Server;
  url = '';
  cdnUrl = '';

  constructor(opts: { repo: string; commit?: string; files: FakeFile[] }) {
    this.repo = opts.repo;
    this.commit = opts.commit ?? 'c0ffee'.padEnd(40, '0');
    this.files = opts.files;
    this.hub = createServer((req, res) => this.handle('hub', req, res));
    this.cdn = createServer((req, res) => this.handle('cdn', req, res));
  }

  async start(): Promise<this> {
    const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
    this.url = `http://127.0.0.1:${await listen(this.hub)}`;
    this.cdnUrl = `http://127.0.0.1:${await listen(this.cdn)}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  etag(f: FakeFile): string {
    return f.lfs ? sha256(f.content) : gitBlobSha1(f.content);
  }

  servedTotal(): number {
    let n = 0;
    for (const v of this.served.values()) n += v;
    return n;
  }

  /** Requests for file content (GET on resolve / cdn), not API or HEAD. */
  contentRequests(): FakeRequest[] {
    return this.requests.filter((r) => r.method === 'GET' && !r.url.startsWith('/api/'));
  }

  reset(): void {
    this.served.clear();
    this.requests.length = 0;
  }

  private handle(server: 'hub' | 'cdn', req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ server, method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').map(decodeURIComponent);
    if (server === 'cdn') {
      const f = this.files.find((x) => x.lfs && sha256(x.content) === parts[2]);
      if (parts[1] !== 'blobs' || !f) return this.text(res, 404, 'no such blob');
      return this.content(req, res, f, { etag: `"${sha256(f.content)}"` });
    }
    const repoParts = this.repo.split('/');
    // /api/models/{org}/{name}/revision/{rev}
    if (parts[1] === 'api' && parts[2] === 'models') {
      if (parts.slice(3, 3 + repoParts.length).join('/') !== this.repo) return this.text(res, 401, 'Repository not found', 'RepoNotFound');
      const rev = parts.slice(4 + repoParts.length).join('/');
      if (parts[3 + repoParts.length] !== 'revision' || (rev !== 'main' && rev !== this.commit)) {
        return this.text(res, 404, 'Revision not found', 'RevisionNotFound');
      }
      const blobs = this.apiBlobs && url.searchParams.get('blobs')?.toLowerCase() === 'true';
      const siblings = this.files.map((f) =>
        blobs
          ? { rfilename: f.path, size: f.content.byteLength, blobId: gitBlobSha1(f.content), ...(f.lfs ? { lfs: { sha256: sha256(f.content), size: f.content.byteLength, pointerSize: 134 } } : {}) }
          : { rfilename: f.path },
      );
      return this.json(res, { id: this.repo, sha: this.commit, gated: this.token ? 'auto' : false, siblings });
    }
    // /{org}/{name}/resolve/{rev}/{path...}
    if (parts.slice(1, 1 + repoParts.length).join('/') !== this.repo || parts[1 + repoParts.length] !== 'resolve') {
      return this.text(res, 404, 'not found', 'RepoNotFound');
    }
    const rev = parts[2 + repoParts.length];
    const path = parts.slice(3 + repoParts.length).join('/');
    if (rev !== 'main' && rev !== this.commit) return this.text(res, 404, 'Revision not found', 'RevisionNotFound');
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) {
      return this.text(res, 401, `Access to model ${this.repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`, 'GatedRepo');
    }
    const f = this.files.find((x) => x.path === path);
    if (!f) return this.text(res, 404, 'Entry not found', 'EntryNotFound');
    const common = { 'x-repo-commit': this.commit };
    if (f.lfs) {
      res.writeHead(302, {
        ...common,
        location: `${this.cdnUrl}/blobs/${sha256(f.content)}?token=signed`,
        'x-linked-etag': `"${sha256(f.content)}"`,
        'x-linked-size': String(f.content.byteLength),
        etag: `"${sha256(f.content)}"`,
        'content-length': '0',
      });
      return void res.end();
    }
    this.content(req, res, f, { ...common, etag: `"${gitBlobSha1(f.content)}"` });
  }

  private content(req: IncomingMessage, res: ServerResponse, f: FakeFile, headers: Record<string, string>): void {
    let body = f.content;
    if (this.corrupt.has(f.path)) {
      body = Uint8Array.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !this.ignoreRange) {
      start = Number(range[1]);
      if (start >= body.byteLength) {
        res.writeHead(416, { 'content-range': `bytes */${body.byteLength}` });
        return void res.end();
      }
      res.writeHead(206, { ...headers, 'content-length': String(body.byteLength - start), 'content-range': `bytes ${start}-${body.byteLength - 1}/${body.byteLength}`, 'accept-ranges': 'bytes' });
    } else {
      res.writeHead(200, { ...headers, 'content-length': String(body.byteLength), 'accept-ranges': 'bytes' });
    }
    if (req.method === 'HEAD') return void res.end();
    let chunk = body.subarray(start);
    const drop = this.dropAfter !== null && this.dropCount > 0 && chunk.byteLength > this.dropAfter;
    if (drop) {
      this.dropCount--;
      chunk = chunk.subarray(0, this.dropAfter!);
    }
    this.served.set(f.path, (this.served.get(f.path) ?? 0) + chunk.byteLength);
    if (drop) {
      // send part of the body, give the client a moment to take it in, then close the connection: it sees a
      // short body (closing at once can make fetch drop bytes it had buffered, which says nothing about resuming)
      res.write(chunk, () => setTimeout(() => res.socket?.end(), 100));
    } else {
      res.end(chunk);
    }
  }

  private json(res: ServerResponse, body: unknown): void {
    const s = JSON.stringify(body);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(s)) });
    res.end(s);
  }

  private text(res: ServerResponse, status: number, msg: string, code?: string): void {
    res.writeHead(status, { 'content-type': 'text/plain', ...(code ? { 'x-error-code': code, 'x-error-message': msg } : {}) });
    res.end(msg);
  }
}

/** A small FLUX-like diffusers repo: regular and LFS files, plus files the default selection must skip. */
export function fakeFluxRepo(): FakeFile[] {
  const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o, null, 2));
  return [
    { path: '.gitattributes', content: new TextEncoder().encode('*.safetensors filter=lfs diff=lfs merge=lfs -text\n') },
    { path: 'README.md', content: new TextEncoder().encode('# fake flux\n') },
    { path: 'model_index.json', content: json({ _class_name: 'FluxPipeline', _diffusers_version: '0.30.0' }) },
    { path: 'scheduler/scheduler_config.json', content: json({ _class_name: 'FlowMatchEulerDiscreteScheduler', shift: 1.0 }) },
    { path: 'transformer/config.json', content: json({ _class_name: 'FluxTransformer2DModel', num_layers: 1 }) },
    { path: 'transformer/diffusion_pytorch_model.safetensors', content: fakeBytes(300_000, 7), lfs: true },
    { path: 'vae/config.json', content: json({ _class_name: 'AutoencoderKL' }) },
    { path: 'vae/diffusion_pytorch_model.safetensors', content: fakeBytes(100_000, 9), lfs: true },
    { path: 'tokenizer/vocab.json', content: json({ a: 0, b: 1 }) },
    { path: 'flux1-schnell.safetensors', content: fakeBytes(50_000, 11), lfs: true },
    { path: 'ae.safetensors', content: fakeBytes(20_000, 13), lfs: true },
    { path: 'text_encoder/pytorch_model.bin', content: fakeBytes(1000, 15), lfs: true },
    { path: 'onnx/model.onnx', content: fakeBytes(1000, 17), lfs: true },
  ];
}
