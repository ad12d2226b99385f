/**
 * Webhook delivery: the result JSON POSTed to the request's `webhook` URL, retried with exponential backoff,
 * signed with HMAC-SHA256 over the exact body when a secret is configured (header `X-Flux-Signature: sha256=<hex>`).
 *
 * SSRF guard: the host name is resolved first and every address is checked; only public unicast addresses are
 * allowed (classified by ipaddr.js: loopback, private, link-local with the 169.254.169.254 cloud metadata service,
 * CGNAT, multicast, reserved; an IPv4-mapped ::ffff:a.b.c.d is judged as a.b.c.d, and every other IPv6 form that
 * embeds an IPv4 address is refused: RFC 6145, NAT64, 6to4, Teredo, the deprecated IPv4-compatible ::a.b.c.d)
 * unless `allowPrivate`. The connection then goes to the
 * address that was checked (no second lookup, so a DNS answer cannot change between the check and the request).
 *
 * Each attempt has a total deadline (connect, send, and the receiver's whole answer), so a receiver that trickles
 * its answer cannot hold a delivery, or the server's shutdown, open; `abortAll()` stops every delivery at once.
 */
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { FluxError } from '@flux-ts/core';
import ipaddr from 'ipaddr.js';

export class WebhookTargetError extends FluxError {
  constructor(message: string) {
    super('webhook_refused', message);
    this.name = 'WebhookTargetError';
  }
}

const METADATA_NAMES = new Set(['metadata.google.internal', 'metadata', 'instance-data', 'metadata.azure.com']);

/** Whether an IP address is anything but a public unicast address (loopback, private, metadata, embedded IPv4...). */
export function isPrivateAddress(address: string): boolean {
  if (!isIP(address)) return true; // not an address at all: refuse
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address.replace(/%.*$/, '')); // a zone index (fe80::1%eth0) does not change the class
  } catch {
    return true;
  }
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address(); // ::ffff:a.b.c.d is a.b.c.d
  if (parsed.range() !== 'unicast') return true;
  // NOTE: ipaddr.js calls the deprecated IPv4-compatible ::a.b.c.d (::/96) unicast when written in hex; the whole
  // ::/8 block is reserved by the IETF (RFC 4291), so nothing public lives there.
  return parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).parts[0]! < 0x100;
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
  /** Total time one attempt may take, connection to the end of the answer, in ms (default 10000). */
  timeoutMs?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export interface DeliveryOutcome {
  ok: boolean;
  attempts: number;
  status?: number;
  error?: string;
}

/** One POST to the checked address; rejects when `timeoutMs` passes before the whole answer has arrived, or on abort. */
function post(target: ResolvedTarget, body: string, headers: Record<string, string>, timeoutMs: number, signal: AbortSignal): Promise<number> {
  const { url } = target;
  const pinned: LookupFunction = (_host, opts, cb) => {
    if ((opts as { all?: boolean }).all) (cb as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  };
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: pinned }, (res) => {
      res.resume();
      res.on('end', () => done(() => resolve(res.statusCode ?? 0)));
      res.on('error', (e) => done(() => reject(e)));
    });
    // A total deadline for the attempt (a socket timeout alone would let a receiver trickle its answer forever).
    const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => req.destroy(new Error('delivery abandoned: the server is shutting down'));
    signal.addEventListener('abort', onAbort, { once: true });
    function done(settle: () => void) {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      settle();
    }
    req.on('error', (e) => done(() => reject(e)));
    if (signal.aborted) onAbort();
    else req.end(body);
  });
}

/** Delivers webhooks and tracks the pending ones (so shutdown can wait for them). */
export class WebhookSender {
  private readonly opts: Required<Omit<WebhookOptions, 'secret' | 'log'>> & Pick<WebhookOptions, 'secret' | 'log'>;
  private readonly pending = new Set<Promise<unknown>>();
  private readonly abort = new AbortController();

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

  /** Stops every delivery now (the shutdown deadline): attempts in flight are cut, no retry starts. */
  abortAll(): void {
    this.abort.abort();
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
    const signal = this.abort.signal;
    for (let attempt = 1; attempt <= this.opts.attempts && !signal.aborted; attempt++) {
      try {
        // Resolved and checked on every attempt: the answer may change between attempts.
        const target = await resolveWebhookTarget(url, this.opts.allowPrivate);
        const status = await post(target, body, headers, this.opts.timeoutMs, signal);
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
      if (attempt < this.opts.attempts && !signal.aborted) await sleep(this.opts.backoffMs * 2 ** (attempt - 1), signal);
    }
    this.opts.log?.warn({ reqId: requestId, attempts: last.attempts, status: last.status, err: last.error }, 'webhook delivery gave up');
    return last;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
