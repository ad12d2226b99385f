/**
 * HTTP to the hub: endpoint and token from the environment, redirects followed by hand so that the
 * `Authorization` header goes to the hub host only (never to the CDN a file redirects to), retries with
 * exponential backoff, and hub status codes turned into FluxErrors that say what to do.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FluxError } from '@flux-ts/core';
import { hfHome } from './cache.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export class HubError extends FluxError {}

/** `$HF_ENDPOINT` (a mirror or a test server), else https://huggingface.co; no trailing slash. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** `$HF_TOKEN`, else the token `huggingface-cli login` saved in `<HF_HOME>/token`, else null. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.HF_TOKEN?.trim()) return env.HF_TOKEN.trim();
  try {
    const t = readFileSync(env.HF_TOKEN_PATH || join(hfHome(env), 'token'), 'utf8').trim();
    return t || null;
  } catch {
    return null;
  }
}

export interface HubClientOptions {
  endpoint: string;
  token: string | null;
  /** Attempts after the first one for network errors, 5xx and 429 (default 5). */
  retries?: number;
  /** First backoff delay; doubles each retry, capped at 30 s (default 1000 ms). */
  retryDelayMs?: number;
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

/** A failure worth retrying (connection reset, timeout, 5xx, 429, body cut short). */
export class TransientError extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function describeNetworkError(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const cause = err?.cause?.code ?? err?.cause?.message;
  return cause ? `${err.message ?? e} (${cause})` : String(err?.message ?? e);
}

export class HubClient {
  readonly endpoint: string;
  readonly token: string | null;
  readonly retries: number;
  readonly retryDelayMs: number;
  private readonly origin: string;
  private readonly onRetry?: HubClientOptions['onRetry'];

  constructor(opts: HubClientOptions) {
    this.endpoint = opts.endpoint.replace(/\/+$/, '');
    let url: URL;
    try {
      url = new URL(this.endpoint);
    } catch {
      throw new HubError('HUB_BAD_ENDPOINT', `HF_ENDPOINT "${opts.endpoint}" is not a URL: use e.g. https://huggingface.co`);
    }
    this.origin = url.origin;
    this.token = opts.token;
    this.retries = opts.retries ?? 5;
    this.retryDelayMs = opts.retryDelayMs ?? 1000;
    this.onRetry = opts.onRetry;
  }

  /**
   * One request, redirects followed by hand (`Authorization` only while on the hub's origin). With
   * `stopAtCrossOrigin`, an absolute redirect off the hub is returned as is (HEAD metadata, like huggingface_hub).
   * Network errors, 5xx and 429 throw TransientError; other statuses are returned for the caller to judge.
   */
  async request(url: string, init: { method?: string; headers?: Record<string, string>; stopAtCrossOrigin?: boolean } = {}): Promise<Response> {
    let current = url;
    for (let hop = 0; hop < 10; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'flux-ts', ...init.headers };
      const onHub = new URL(current).origin === this.origin;
      if (this.token && onHub) headers.authorization = `Bearer ${this.token}`;
      let res: Response;
      try {
        res = await fetch(current, { method: init.method ?? 'GET', headers, redirect: 'manual' });
      } catch (e) {
        throw new TransientError(`${new URL(current).host}: ${describeNetworkError(e)}`);
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        const next = new URL(res.headers.get('location')!, current).toString();
        if (init.stopAtCrossOrigin && new URL(next).origin !== this.origin) return res;
        await res.body?.cancel().catch(() => {});
        current = next;
        continue;
      }
      if (res.status >= 500 || res.status === 429) {
        await res.body?.cancel().catch(() => {});
        throw new TransientError(`${new URL(current).host} answered HTTP ${res.status}`);
      }
      return res;
    }
    throw new HubError('HUB_REDIRECT_LOOP', `too many redirects fetching ${url}`);
  }

  /** Runs `fn` again after TransientErrors, with backoff; then a HubError saying what failed. */
  async withRetries<T>(what: string, url: string, fn: (attempt: number) => Promise<T>, hint = ''): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (!(e instanceof TransientError)) throw e;
        if (attempt >= this.retries) {
          throw new HubError(
            'HUB_NETWORK',
            `${what} failed after ${attempt + 1} attempt${attempt ? 's' : ''}: ${e.message}. Check the network (and HF_ENDPOINT=${this.endpoint})${hint}`,
            { cause: e },
          );
        }
        const delayMs = Math.min(this.retryDelayMs * 2 ** attempt, 30_000);
        this.onRetry?.({ url, attempt: attempt + 1, delayMs, reason: e.message });
        await sleep(delayMs);
      }
    }
  }

  /** Turns a non-2xx hub answer into a FluxError that says what to do. */
  async statusError(res: Response, repo: string, what: string): Promise<HubError> {
    const code = res.headers.get('x-error-code') ?? '';
    const serverMsg = (res.headers.get('x-error-message') ?? (await res.text().catch(() => '')).slice(0, 200)).trim();
    const page = `${this.endpoint}/${repo}`;
    await res.body?.cancel().catch(() => {});
    if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound')) {
      const tokenHint = this.token
        ? 'HF_TOKEN is set but the hub refused it: check that this token\'s account has accepted the license and that the token has read access'
        : 'then create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN=<token>';
      return new HubError(
        'HUB_GATED',
        `${repo} is a gated repository (HTTP ${res.status} for ${what}): accept the license on ${page} while logged in, ${tokenHint}.`,
      );
    }
    if (res.status === 404 || res.status === 401 || code === 'RepoNotFound' || code === 'RevisionNotFound' || code === 'EntryNotFound') {
      const detail = code === 'RevisionNotFound' ? 'revision not found' : code === 'EntryNotFound' ? 'file not found' : 'repository or revision not found';
      return new HubError(
        'HUB_NOT_FOUND',
        `${what}: ${detail} (HTTP ${res.status}) on ${this.endpoint}. Check the repo id (org/name) and --revision; a private repo also needs HF_TOKEN.`,
      );
    }
    return new HubError('HUB_HTTP', `${what}: the hub answered HTTP ${res.status}${serverMsg ? ` (${serverMsg})` : ''}`);
  }
}
