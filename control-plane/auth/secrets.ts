/**
 * Token formats and their storage. Every token is `<prefix><id>.<secret>`; only SHA-256 of the
 * secret is stored (the secrets are 256 random bits, so a fast hash is enough) and it is compared
 * in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { randomAlnum } from '../../common/ids.ts';

export const PAT_PREFIX = 'tether_pat_';
export const BOOTSTRAP_PREFIX = 'tether_bt_';

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function newToken(prefix: string): { id: string; secret: string; token: string } {
  const id = randomAlnum(12);
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, token: `${prefix}${id}.${secret}` };
}

/** Splits a token of the given kind into id and secret; undefined if it is not shaped like one. */
export function parseToken(prefix: string, token: string): { id: string; secret: string } | undefined {
  if (!token.startsWith(prefix)) return undefined;
  const m = /^([a-z0-9]{12})\.([A-Za-z0-9_-]{43})$/.exec(token.slice(prefix.length));
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}
