/** Accounts, clusters and admin API tokens (personal access tokens). */
import { z } from 'zod';
import { randomAlnum } from '../../common/ids.ts';
import { decodeCursor, page } from '../pagination.ts';
import { accountOverview, type Overview } from './overview.ts';
import { conflict, unauthorized } from '../../common/errors.ts';
import { iso, type Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import * as accounts from '../db/accounts.repository.ts';
import * as tokens from '../db/tokens.repository.ts';
import { deleteSessionsOfToken } from '../db/sessions.repository.ts';
import { PAT_PREFIX, hashSecret, newToken, parseToken, secretMatches } from '../auth/secrets.ts';
import type { Config } from '../config.ts';

export interface ClusterView {
  aid: string;
  cid: string;
  domain: string;
  createdAt: string;
}

export class AccountsService {
  private readonly d: { db: Db; clock: Clock; config: Config; log: Logger };
  constructor(deps: { db: Db; clock: Clock; config: Config; log: Logger }) {
    this.d = deps;
  }

  async hasAccounts(): Promise<boolean> {
    return (await accounts.countAccounts(this.d.db)) > 0;
  }

  /** Creates an account and its first admin token (returned once, never stored in clear). */
  async createAccount(name: string, aid = randomAlnum(5)): Promise<{ aid: string; token: string }> {
    await accounts.insertAccount(this.d.db, { aid, name, now: this.d.clock.now() });
    const { token } = await this.createApiToken(aid, { name: `${name} admin` });
    this.d.log.info({ aid }, 'account created');
    return { aid, token };
  }

  async createApiToken(aid: string, t: { name: string; ttlSeconds?: number }) {
    const { id, secret, token } = newToken(PAT_PREFIX);
    const now = this.d.clock.now();
    const expiresAt = now + (t.ttlSeconds ?? this.d.config.adminTokenTtlDays * 86400) * 1000;
    await tokens.insertApiToken(this.d.db, { key_id: id, aid, name: t.name, secret_hash: hashSecret(secret), expires_at: expiresAt, revoked_at: null, created_at: now });
    return { token, keyId: id, expiresAt: iso(expiresAt)! };
  }

  async revokeApiToken(aid: string, keyId: string): Promise<boolean> {
    this.tokenCache.clear();
    try {
      const revoked = await tokens.revokeApiToken(this.d.db, aid, keyId, this.d.clock.now());
      // The console sessions made from it end with it.
      if (revoked) await deleteSessionsOfToken(this.d.db, keyId);
      return revoked;
    } finally {
      this.tokenCache.clear(); // and again: a lookup that ran before the revocation committed may have cached the row
    }
  }

  /**
   * API token rows known to be unrevoked, by key id: the lookup behind every admin request. Only
   * this process revokes tokens (revokeApiToken() above), and it clears the cache before and after,
   * so a revocation applies to the very next request. The secret is still checked against the
   * stored hash, and the expiry against the clock, on every request; no token is kept in clear.
   */
  private readonly tokenCache = new Map<string, { aid: string; key_id: string; secret_hash: string; expires_at: number; revoked_at: number | null }>();

  /** Resolves `Authorization: Bearer tether_pat_…` to its account; every failure is a 401. */
  async authenticate(bearer: string): Promise<{ aid: string; keyId: string }> {
    const parsed = parseToken(PAT_PREFIX, bearer);
    let row = parsed ? this.tokenCache.get(parsed.id) : undefined;
    if (parsed && !row) {
      row = await tokens.getApiToken(this.d.db, parsed.id);
      // Cached only once the secret matched: unknown ids and wrong secrets never fill the cache.
      if (row && row.revoked_at === null && secretMatches(parsed.secret, row.secret_hash)) {
        if (this.tokenCache.size >= 10_000) this.tokenCache.clear();
        this.tokenCache.set(parsed.id, row);
      }
    }
    if (!parsed || !row || !secretMatches(parsed.secret, row.secret_hash)) throw unauthorized('the API token is not valid', 'invalid_token');
    if (row.revoked_at !== null) throw unauthorized('the API token has been revoked', 'token_revoked');
    if (row.expires_at <= this.d.clock.now()) throw unauthorized('the API token has expired', 'token_expired');
    return { aid: row.aid, keyId: row.key_id };
  }

  async createCluster(aid: string, c: { cid: string; domainRoot?: string }): Promise<ClusterView> {
    if (await accounts.getCluster(this.d.db, aid, c.cid)) throw conflict(`cluster ${c.cid} already exists`, 'cluster_exists');
    const now = this.d.clock.now();
    const domain = `${c.cid}.${aid}.${c.domainRoot ?? this.d.config.domainRoot}`;
    await accounts.insertCluster(this.d.db, { aid, cid: c.cid, domain, now });
    this.d.log.info({ aid, cid: c.cid }, 'cluster created');
    return { aid, cid: c.cid, domain, createdAt: iso(now)! };
  }

  /** A page of the account's API tokens, newest first (never a secret or its hash). */
  async listApiTokens(aid: string, f: { limit: number; cursor?: string }) {
    const after = decodeCursor(f.cursor, z.tuple([z.number().int(), z.string().max(100)]));
    const now = this.d.clock.now();
    const rows = await tokens.listApiTokens(this.d.db, aid, { limit: f.limit + 1, after });
    const p = page(rows, f.limit, (t) => [t.created_at, t.key_id], (t) => ({
      keyId: t.key_id,
      name: t.name,
      state: t.revoked_at !== null ? ('revoked' as const) : t.expires_at <= now ? ('expired' as const) : ('active' as const),
      createdAt: iso(t.created_at)!,
      expiresAt: iso(t.expires_at)!,
      revokedAt: iso(t.revoked_at),
    }));
    return { tokens: p.items, nextCursor: p.nextCursor };
  }

  /** The console's overview of the account (overview.ts). */
  overview(aid: string): Promise<Overview> {
    return accountOverview(this.d, aid);
  }

  async listClusters(aid: string): Promise<ClusterView[]> {
    return (await accounts.listClusters(this.d.db, aid)).map((c) => ({ aid: c.aid, cid: c.cid, domain: c.domain, createdAt: iso(c.created_at)! }));
  }
}
