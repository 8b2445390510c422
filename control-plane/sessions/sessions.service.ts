/**
 * Browser sessions for the web console (issue 14). An API token is exchanged once
 * (POST /v1/sessions) for a random 256-bit session secret carried by an HttpOnly, Secure,
 * SameSite=Strict cookie; the token itself never reaches browser storage. Only the SHA-256 of the
 * secret is stored. The CSRF token is derived from the secret with an HMAC under a server key
 * (`<data-dir>/session-key`, 0600), so it is never stored and a stolen database row yields
 * neither. A session ends at its absolute expiry (never later than its API token's), after
 * `sessionIdleSeconds` without a request, on sign-out, when its token is revoked, or when the
 * account opens more than `sessionsPerAccount` (the oldest go first). Expired rows are swept
 * on a timer.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { unauthorized } from '../../common/errors.ts';
import { iso, type Clock } from '../../common/clock.ts';
import { writeFileAtomic } from '../../common/files.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import * as sessions from '../db/sessions.repository.ts';
import { getAccount } from '../db/accounts.repository.ts';
import { getApiToken } from '../db/tokens.repository.ts';
import { hashSecret } from '../auth/secrets.ts';
import type { AccountsService } from '../accounts/accounts.service.ts';
import type { Config } from '../config.ts';

export const SESSION_COOKIE = 'tether_session';

/** What the console shows about who is signed in. */
export interface SessionAccount {
  aid: string;
  name: string;
  /** The API token the session was made from. */
  keyId: string;
  tokenName: string;
}

export interface SessionView {
  csrfToken: string;
  expiresAt: string;
  account: SessionAccount;
}

/** A session resolved from its cookie. */
export interface Session {
  idHash: string;
  aid: string;
  keyId: string;
  expiresAt: number;
  csrfToken: string;
}

const SECRET = /^[A-Za-z0-9_-]{43}$/;

/** The server key the CSRF tokens are derived with, in `file` (created, 0600, when absent or malformed). */
export function loadOrCreateSessionKey(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    text = '';
  }
  if (!SECRET.test(text)) {
    text = randomBytes(32).toString('base64url');
    writeFileAtomic(file, `${text}\n`, 0o600);
  }
  return Buffer.from(text, 'base64url');
}

/**
 * Replicas on PostgreSQL with the operator's CA key encryption key: the session key is derived
 * from it (HMAC-SHA256 under a fixed label), so every replica checks the same CSRF tokens while
 * the key is still stored nowhere (a file per data folder would give each replica its own).
 */
export function deriveSessionKey(kek: Buffer): Buffer {
  return createHmac('sha256', kek).update('tether console session key v1').digest();
}

/** Constant-time equality of two strings (false at once when the lengths differ). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export class SessionsService {
  private readonly d: { db: Db; clock: Clock; config: Config; log: Logger; accounts: AccountsService; key: Buffer };
  private timer: NodeJS.Timeout | undefined;
  constructor(deps: { db: Db; clock: Clock; config: Config; log: Logger; accounts: AccountsService; key: Buffer }) {
    this.d = deps;
  }

  /** Seconds the cookie lives (Max-Age) for a session expiring at `expiresAt`. */
  maxAgeSeconds(expiresAt: number): number {
    return Math.max(0, Math.floor((expiresAt - this.d.clock.now()) / 1000));
  }

  /** Signs in with an API token; every failure is a 401 (the caller counts it against the address). */
  async create(token: string): Promise<{ secret: string; expiresAt: number; view: SessionView }> {
    const { aid, keyId } = await this.d.accounts.authenticate(token);
    const tokenRow = await getApiToken(this.d.db, keyId);
    const account = await getAccount(this.d.db, aid);
    if (!tokenRow || !account) throw unauthorized('the API token is not valid', 'invalid_token');
    const secret = randomBytes(32).toString('base64url');
    const now = this.d.clock.now();
    const expiresAt = Math.min(now + this.d.config.sessionTtlSeconds * 1000, tokenRow.expires_at);
    const evicted = await sessions.insertSession(this.d.db, { id_hash: hashSecret(secret), aid, key_id: keyId, created_at: now, last_seen_at: now, expires_at: expiresAt }, this.d.config.sessionsPerAccount);
    this.d.log.info({ aid, keyId, evicted }, 'console session created');
    return { secret, expiresAt, view: { csrfToken: this.csrfOf(secret), expiresAt: iso(expiresAt)!, account: { aid, name: account.name, keyId, tokenName: tokenRow.name } } };
  }

  /** Resolves the cookie's value to a live session; 401 otherwise (an expired row is deleted). */
  async authenticate(secret: string): Promise<Session> {
    // Shape first: nothing is hashed or looked up for a value that cannot be a session.
    if (!SECRET.test(secret)) throw unauthorized('the session is not valid; sign in again', 'invalid_session');
    const idHash = hashSecret(secret);
    const row = await sessions.getSession(this.d.db, idHash);
    if (!row || !sameSecret(row.id_hash, idHash)) throw unauthorized('the session is not valid; sign in again', 'invalid_session');
    const now = this.d.clock.now();
    // Revoking the token deletes its sessions; checked here as well, so that a session created
    // while the revocation ran cannot outlive it.
    const tokenRow = await getApiToken(this.d.db, row.key_id);
    if (!tokenRow || tokenRow.revoked_at !== null) {
      await sessions.deleteSession(this.d.db, idHash);
      throw unauthorized('the API token this session was made from has been revoked; sign in again', 'token_revoked');
    }
    const idleMs = this.d.config.sessionIdleSeconds * 1000;
    if (row.expires_at <= now || row.last_seen_at + idleMs <= now) {
      await sessions.deleteSession(this.d.db, idHash);
      throw unauthorized('the session has expired; sign in again', 'session_expired');
    }
    // The idle clock restarts on use; written at most once a minute (or a tenth of the idle time).
    if (now - row.last_seen_at >= Math.min(60_000, idleMs / 10)) await sessions.touchSession(this.d.db, idHash, now);
    return { idHash, aid: row.aid, keyId: row.key_id, expiresAt: row.expires_at, csrfToken: this.csrfOf(secret) };
  }

  /** The view of a session already resolved by authenticate(). */
  async view(s: Session): Promise<SessionView> {
    const [account, tokenRow] = await Promise.all([getAccount(this.d.db, s.aid), getApiToken(this.d.db, s.keyId)]);
    return { csrfToken: s.csrfToken, expiresAt: iso(s.expiresAt)!, account: { aid: s.aid, name: account?.name ?? '', keyId: s.keyId, tokenName: tokenRow?.name ?? '' } };
  }

  /** Whether `given` is the session's CSRF token (constant time). */
  csrfMatches(s: Session, given: string | undefined): boolean {
    return typeof given === 'string' && sameSecret(s.csrfToken, given);
  }

  async revoke(s: Session): Promise<void> {
    await sessions.deleteSession(this.d.db, s.idHash);
    this.d.log.info({ aid: s.aid, keyId: s.keyId }, 'console session ended (sign-out)');
  }

  /** Ends the sessions made from an API token (it was revoked). */
  async revokeToken(keyId: string): Promise<number> {
    return sessions.deleteSessionsOfToken(this.d.db, keyId);
  }

  /** Deletes expired and idle sessions; returns how many. */
  async sweep(): Promise<number> {
    const now = this.d.clock.now();
    const n = await sessions.deleteExpiredSessions(this.d.db, now, now - this.d.config.sessionIdleSeconds * 1000);
    if (n > 0) this.d.log.info({ sessions: n }, 'expired console sessions deleted');
    return n;
  }

  /** Sweeps every ten minutes until stop(). */
  start(intervalMs = 10 * 60_000): void {
    this.timer = setInterval(() => void this.sweep().catch((err: unknown) => this.d.log.error({ err }, 'session sweep failed')), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private csrfOf(secret: string): string {
    return createHmac('sha256', this.d.key).update(`tether-csrf\0${secret}`).digest('base64url');
  }
}
