/**
 * Webhook delivery, one attempt at a time (the retry schedule is the outbox's: outbox.ts, redis-outbox.ts).
 *
 * Signing follows the Standard Webhooks specification (https://www.standardwebhooks.com): every attempt carries
 * `webhook-id` (one per message, the same on every retry, so a receiver can drop a replay or a duplicate),
 * `webhook-timestamp` (seconds, the time of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "<id>.<timestamp>.<body>">` when a secret is configured. A `whsec_<base64>` secret is used as the spec says (the
 * key is the decoded base64); any other secret string is used as its UTF-8 bytes. The older
 * `X-Flux-Signature: sha256=<hex HMAC-SHA256 of the body with the secret string>` is sent too, for compatibility.
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

export type WebhookEvent = 'start' | 'completed';
export const WEBHOOK_EVENTS: readonly WebhookEvent[] = Object.freeze(['start', 'completed']);

/** One message to one URL: its body is fixed when it is created, its signature made afresh on every attempt. */
export interface Delivery {
  /** The Standard Webhooks message id (`webhook-id`): the same on every attempt. */
  id: string;
  request_id: string;
  event: WebhookEvent;
  url: string;
  /** The exact JSON body. */
  body: string;
}

/** The message id of a job's event: one per (request, event), so re-creating it (a restart) is idempotent. */
export const webhookId = (requestId: string, event: WebhookEvent) => `msg_${event}_${requestId}`;

/** The legacy body signature: `sha256=<hex HMAC-SHA256(secret string, body)>`. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** The Standard Webhooks key of a secret: a `whsec_` secret's base64 part decoded, else the string's UTF-8 bytes. */
export function webhookKey(secret: string): Buffer {
  if (secret.startsWith('whsec_')) {
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    if (key.length < 16) throw new WebhookSecretError('a whsec_ webhook secret must carry at least 16 bytes of base64 after "whsec_"; make one with: echo whsec_$(openssl rand -base64 32)');
    return key;
  }
  if (secret.length === 0) throw new WebhookSecretError('the webhook secret is empty');
  return Buffer.from(secret, 'utf8');
}

export class WebhookSecretError extends FluxError {
  constructor(message: string) {
    super('webhook_secret', message);
    this.name = 'WebhookSecretError';
  }
}

/** `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` (Standard Webhooks). */
export function standardSignature(key: Buffer, id: string, timestampS: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64')}`;
}

/** The headers of one attempt. */
export function deliveryHeaders(d: Delivery, secret: string | undefined, nowS = Math.floor(Date.now() / 1000)): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'flux-ts-server',
    'x-request-id': d.request_id,
    'x-flux-event': d.event,
    'webhook-id': d.id,
    'webhook-timestamp': String(nowS),
  };
  if (secret) {
    headers['webhook-signature'] = standardSignature(webhookKey(secret), d.id, nowS, d.body);
    headers['x-flux-signature'] = signBody(secret, d.body);
  }
  return headers;
}

export interface AttemptOutcome {
  ok: boolean;
  status?: number;
  error?: string;
  /** Retrying cannot help (a refused target, a 4xx other than 408/429). */
  permanent: boolean;
}

export interface WebhookOptions {
  allowPrivate?: boolean;
  secret?: string;
  /** Total time one attempt may take, connection to the end of the answer, in ms (default 10000). */
  timeoutMs?: number;
}

/** One attempt at a time, signed; `abortAll()` cuts every attempt in flight (the shutdown deadline). */
export class WebhookSender {
  readonly allowPrivate: boolean;
  private readonly secret?: string;
  private readonly timeoutMs: number;
  private abort = new AbortController();

  constructor(opts: WebhookOptions = {}) {
    this.allowPrivate = opts.allowPrivate ?? false;
    this.secret = opts.secret;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    if (this.secret !== undefined) webhookKey(this.secret); // refuse a bad secret at start, not at the first delivery
  }

  /** The request-time check: throws `WebhookTargetError` for a refused target. */
  check(url: string): Promise<ResolvedTarget> {
    return resolveWebhookTarget(url, this.allowPrivate);
  }

  get aborted(): boolean {
    return this.abort.signal.aborted;
  }

  /** Stops every attempt in flight now. */
  abortAll(): void {
    this.abort.abort();
  }

  async attempt(d: Delivery): Promise<AttemptOutcome> {
    const signal = this.abort.signal;
    if (signal.aborted) return { ok: false, error: 'delivery abandoned: the server is shutting down', permanent: false };
    try {
      // Resolved and checked on every attempt: the answer may change between attempts.
      const target = await resolveWebhookTarget(d.url, this.allowPrivate);
      const status = await post(target, d.body, deliveryHeaders(d, this.secret), this.timeoutMs, signal);
      const ok = status >= 200 && status < 300;
      // A 4xx other than 408/429 will not get better by retrying.
      return { ok, status, permanent: !ok && status >= 400 && status < 500 && status !== 408 && status !== 429 };
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e), permanent: e instanceof WebhookTargetError };
    }
  }
}

/**
 * The retry schedule: delays before the 2nd, 3rd, ... attempt. The default is Svix's: 5 s, 5 min, 30 min, 2 h, 5 h,
 * 10 h, 10 h (8 attempts over about 27 hours).
 */
export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = Object.freeze([5e3, 3e5, 18e5, 72e5, 18e6, 36e6, 36e6]);

/** "5s,5m,30m,2h" -> milliseconds; throws a FluxError naming the bad entry. */
export function parseRetrySchedule(text: string): number[] {
  if (text.trim() === '' || text.trim() === 'none') return [];
  return text.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(part);
    if (!m) throw new FluxError('INVALID_ARGUMENT', `--webhook-retries: "${part}" is not a delay like 5s, 5m, 2h or 1d (comma separated)`);
    const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'];
    return Math.round(Number(m[1]) * unit);
  });
}
