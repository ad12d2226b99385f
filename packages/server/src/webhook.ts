/**
 * Webhook delivery: the result JSON POSTed to the request's `webhook` URL, retried with exponential backoff,
 * signed with HMAC-SHA256 over the exact body when a secret is configured (header `X-Flux-Signature: sha256=<hex>`).
 *
 * SSRF guard: the host name is resolved first and every address is checked; loopback, private, link-local
 * (which includes the 169.254.169.254 cloud metadata service), CGNAT, multicast and unspecified addresses are
 * refused unless `allowPrivate`. The connection then goes to the address that was checked (no second lookup,
 * so a DNS answer cannot change between the check and the request).
 */
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { FluxError } from '@flux-ts/core';

export class WebhookTargetError extends FluxError {
  constructor(message: string) {
    super('webhook_refused', message);
    this.name = 'WebhookTargetError';
  }
}

const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['2001:db8::', 32],
] as const) BLOCKED.addSubnet(net, prefix, 'ipv6');

const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata', 'instance-data', 'metadata.azure.com']);

/** Whether an IP address is loopback, private, link-local, metadata or otherwise not a public unicast address. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return BLOCKED.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return BLOCKED.check(mapped[1]!, 'ipv4');
    return BLOCKED.check(address, 'ipv6');
  }
  return true; // not an address at all: refuse
}

export interface ResolvedTarget {
  url: URL;
  address: string;
  family: 4 | 6;
}

/** Resolves the webhook's host and checks every address; throws `WebhookTargetError` when refused. */
export async function resolveWebhookTarget(raw: string, allowPrivate: boolean): Promise<ResolvedTarget> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookTargetError(`webhook ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WebhookTargetError('webhook must use http:// or https://');
  if (url.username || url.password) throw new WebhookTargetError('webhook URL must not carry credentials');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!allowPrivate && METADATA_NAMES.has(host.toLowerCase())) {
    throw new WebhookTargetError(`webhook host ${host} is a cloud metadata service; refused`);
  }
  let addresses: { address: string; family: number }[];
  try {
    addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true, verbatim: true });
  } catch {
    throw new WebhookTargetError(`webhook host ${host} could not be resolved`);
  }
  if (addresses.length === 0) throw new WebhookTargetError(`webhook host ${host} has no address`);
  if (!allowPrivate) {
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) {
      throw new WebhookTargetError(
        `webhook host ${host} resolves to ${bad.address}, a loopback, private, link-local or metadata address; refused ` +
          '(a server operator can allow it with --allow-private-webhooks)',
      );
    }
  }
  const first = addresses[0]!;
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 };
}

export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface WebhookOptions {
  allowPrivate?: boolean;
  secret?: string;
  /** Attempts in all (default 5). */
  attempts?: number;
  /** First retry delay in ms, doubled each time (default 500). */
  backoffMs?: number;
  /** Per-attempt timeout in ms (default 10000). */
  timeoutMs?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface DeliveryOutcome {
  ok: boolean;
  attempts: number;
  status?: number;
  error?: string;
}

function post(target: ResolvedTarget, body: string, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  const { url } = target;
  const pinned: LookupFunction = (_host, opts, cb) => {
    if ((opts as { all?: boolean }).all) (cb as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  };
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: pinned, timeout: timeoutMs },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Delivers webhooks and tracks the pending ones (so shutdown can wait for them). */
export class WebhookSender {
  private readonly opts: Required<Omit<WebhookOptions, 'secret' | 'log'>> & Pick<WebhookOptions, 'secret' | 'log'>;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(opts: WebhookOptions = {}) {
    this.opts = {
      allowPrivate: opts.allowPrivate ?? false,
      attempts: opts.attempts ?? 5,
      backoffMs: opts.backoffMs ?? 500,
      timeoutMs: opts.timeoutMs ?? 10_000,
      secret: opts.secret,
      log: opts.log,
    };
  }

  /** The request-time check: throws `WebhookTargetError` for a refused target. */
  check(url: string): Promise<ResolvedTarget> {
    return resolveWebhookTarget(url, this.opts.allowPrivate);
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  deliver(url: string, payload: unknown, requestId: string): Promise<DeliveryOutcome> {
    return this.track(this.run(url, payload, requestId));
  }

  /** Counts a delivery that is yet to start (a job still running) as pending, so `flush` waits for it. */
  track<T>(p: Promise<T>): Promise<T> {
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.pending.add(settled as Promise<never>);
    void settled.finally(() => this.pending.delete(settled as Promise<never>));
    return p;
  }

  /** Resolves when every pending delivery has finished (succeeded or given up). */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  private async run(url: string, payload: unknown, requestId: string): Promise<DeliveryOutcome> {
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'flux-ts-server',
      'x-request-id': requestId,
    };
    if (this.opts.secret) headers['x-flux-signature'] = signBody(this.opts.secret, body);
    let last: DeliveryOutcome = { ok: false, attempts: 0 };
    for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
      try {
        // Resolved and checked on every attempt: the answer may change between attempts.
        const target = await resolveWebhookTarget(url, this.opts.allowPrivate);
        const status = await post(target, body, headers, this.opts.timeoutMs);
        last = { ok: status >= 200 && status < 300, attempts: attempt, status };
        if (last.ok) {
          this.opts.log?.info({ reqId: requestId, attempt, status }, 'webhook delivered');
          return last;
        }
        // A 4xx other than 408/429 will not get better by retrying.
        if (status >= 400 && status < 500 && status !== 408 && status !== 429) break;
      } catch (e) {
        last = { ok: false, attempts: attempt, error: e instanceof Error ? e.message : String(e) };
        if (e instanceof WebhookTargetError) break;
      }
      this.opts.log?.warn({ reqId: requestId, attempt, status: last.status, err: last.error }, 'webhook attempt failed');
      if (attempt < this.opts.attempts) await new Promise((r) => setTimeout(r, this.opts.backoffMs * 2 ** (attempt - 1)));
    }
    this.opts.log?.warn({ reqId: requestId, attempts: last.attempts, status: last.status, err: last.error }, 'webhook delivery gave up');
    return last;
  }
}
