/**
 * Bearer-token auth: `Authorization: bearer <token>` (scheme case-insensitive) against the configured tokens.
 * Both sides are SHA-256 hashed and compared with crypto.timingSafeEqual, every configured token each time, so
 * neither the token's length nor which token matched shows in the timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

const hash = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export class TokenChecker {
  private readonly hashes: Buffer[];
  constructor(tokens: readonly string[]) {
    this.hashes = tokens.filter((t) => t.length > 0).map(hash);
  }

  get enabled(): boolean {
    return this.hashes.length > 0;
  }

  /** Whether an Authorization header carries a configured token. */
  check(header: string | undefined): boolean {
    const m = header === undefined ? null : /^bearer\s+(\S+)\s*$/i.exec(header);
    const given = hash(m ? m[1]! : '');
    let ok = false;
    for (const h of this.hashes) ok = timingSafeEqual(given, h) || ok;
    return ok && m !== null;
  }
}

/** Tokens from a comma- or whitespace-separated FLUX_API_TOKENS value. */
export function tokensFromEnv(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}
