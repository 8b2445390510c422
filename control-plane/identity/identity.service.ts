/**
 * Agent identity: one-time bootstrap tokens traded for certificates, renewal over mTLS,
 * revocation, and authenticating each mTLS request by its certificate's serial.
 */
import { randomAlnum } from '../../common/ids.ts';
import { TetherError, badRequest, forbidden, notFound, unauthorized } from '../../common/errors.ts';
import type { AgentIdentity } from '../../common/identity.ts';
import { z } from 'zod';
import { HEALTHY_BELOW_S, OFFLINE_FROM_S, agentStatus, type AgentView, type BootstrapRequest, type BootstrapResponse } from '../../common/wire.ts';
import { iso, type Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import * as agents from '../db/agents.repository.ts';
import * as tokens from '../db/tokens.repository.ts';
import { getCluster } from '../db/accounts.repository.ts';
import { addToWindow, clearWindow } from '../db/limits.repository.ts';
import { issueAgentCertificate, type CaMaterial } from '../pki/ca.ts';
import { BOOTSTRAP_PREFIX, hashSecret, newToken, parseToken, secretMatches } from '../auth/secrets.ts';
import type { Config } from '../config.ts';
import type { AgentPrincipal } from '../queue/queue.service.ts';
import { decodeCursor, page } from '../pagination.ts';

/** Certificates kept in the identity cache at most (it is emptied when full). */
const CERT_CACHE_MAX = 100_000;

export interface IdentityDeps {
  db: Db;
  clock: Clock;
  config: Config;
  ca: CaMaterial;
  log: Logger;
  /** Called after a node agent is bootstrapped / revoked (the VPN resyncs the cluster); a failure is logged, never raised. */
  onNodeJoined?: (node: AgentPrincipal) => Promise<void>;
  onNodeLeft?: (node: AgentPrincipal) => Promise<void>;
  /** Called once an agent's revocation is committed: end its held polls and connections at once. */
  onAgentRevoked?: (agentId: string) => void;
  /**
   * Replicas on PostgreSQL: one renewal at a time per agent across them (a `renew:<agent>` row in
   * rate_limits, taken by a conditional upsert, freed at the end or a minute later), and a
   * renewal window remembered here is only trusted to refuse (another replica may have renewed).
   */
  sharedRenewals?: boolean;
}

export class IdentityService {
  private readonly d: IdentityDeps;
  constructor(deps: IdentityDeps) {
    this.d = deps;
  }

  async createBootstrapToken(aid: string, t: { cluster: string; role: 'node' | 'cluster-agent'; controlPlane?: boolean; ttlSeconds?: number }) {
    const { db, clock, config } = this.d;
    if (!(await getCluster(db, aid, t.cluster))) throw notFound(`cluster ${t.cluster} does not exist`, 'cluster_not_found');
    if (t.role === 'cluster-agent' && t.controlPlane !== undefined) throw badRequest('controlPlane applies to node tokens only');
    const { id, secret, token } = newToken(BOOTSTRAP_PREFIX);
    const now = clock.now();
    const expiresAt = now + (t.ttlSeconds ?? config.bootstrapTokenTtlSeconds) * 1000;
    await tokens.insertBootstrapToken(db, {
      id,
      aid,
      cid: t.cluster,
      role: t.role,
      control_plane: t.controlPlane ? 1 : 0,
      secret_hash: hashSecret(secret),
      expires_at: expiresAt,
      used_at: null,
      used_by_agent: null,
      created_at: now,
    });
    this.d.log.info({ tokenId: id, aid, cid: t.cluster, role: t.role }, 'bootstrap token created');
    return { token, id, expiresAt: iso(expiresAt)! };
  }

  /** Trades a one-time bootstrap token and a CSR for a client certificate. */
  async bootstrap(req: BootstrapRequest): Promise<BootstrapResponse> {
    const { db, clock, config } = this.d;
    const now = clock.now();
    const parsed = parseToken(BOOTSTRAP_PREFIX, req.token);
    const row = parsed ? await tokens.getBootstrapToken(db, parsed.id) : undefined;
    // One message for unknown and wrong-secret tokens: no oracle for which ids exist.
    if (!parsed || !row || !secretMatches(parsed.secret, row.secret_hash)) throw unauthorized('the bootstrap token is not valid', 'invalid_token');
    if (row.used_at !== null) throw unauthorized('the bootstrap token was already used', 'token_used');
    if (row.expires_at <= now) throw unauthorized('the bootstrap token has expired', 'token_expired');
    if (req.aid !== undefined && req.aid !== row.aid) throw forbidden(`the bootstrap token does not belong to account ${req.aid}`, 'wrong_account');
    if (row.role === 'node' && req.controlPlane !== undefined && req.controlPlane !== (row.control_plane === 1)) {
      throw forbidden(`the bootstrap token is for a ${row.control_plane ? 'control-plane' : 'worker'} node`, 'wrong_role');
    }

    let nid: string | null = null;
    if (row.role === 'node') {
      nid = req.nodeName ?? randomAlnum(5);
      if (await agents.findActiveNode(db, row.aid, row.cid, nid)) {
        throw new TetherError('node_exists', `node ${nid} is already registered in cluster ${row.cid}; revoke it first`, { status: 409 });
      }
    }
    const agentId = `${row.role === 'node' ? 'nd' : 'ca'}-${randomAlnum(10)}`;
    const identity: AgentIdentity = { agentId, aid: row.aid, cid: row.cid, role: row.role, nid };
    const cert = await issueAgentCertificate(this.d.ca, req.csr, identity, config.certificateTtlDays * 86400_000, now);

    const ok = await db.transaction().execute(async (trx) => {
      if (!(await tokens.spendBootstrapToken(trx, row.id, agentId, now))) return false;
      await agents.insertAgent(trx, { id: agentId, aid: row.aid, cid: row.cid, role: row.role, nid, control_plane: row.control_plane, created_at: now });
      await agents.insertCertificate(trx, { serial: cert.serial, agent_id: agentId, not_before: cert.notBefore, not_after: cert.notAfter, revoked_at: null, created_at: now });
      return true;
    });
    if (!ok) throw unauthorized('the bootstrap token was already used', 'token_used');
    this.d.log.info({ agentId, aid: row.aid, cid: row.cid, role: row.role, nid }, 'agent bootstrapped');
    if (row.role === 'node') await this.d.onNodeJoined?.({ agentId, aid: row.aid, cid: row.cid, role: 'node', nid }).catch((err: unknown) => this.d.log.error({ err, agentId }, 'onNodeJoined hook failed'));
    return {
      agentId,
      aid: row.aid,
      cid: row.cid,
      role: row.role,
      nid,
      controlPlane: row.control_plane === 1,
      certificate: cert.certPem,
      caCertificate: this.d.ca.caCertPem,
      expiresAt: iso(cert.notAfter)!,
    };
  }

  /**
   * Certificates known to be unrevoked, by serial: the lookup behind every agent request. Only
   * this process revokes (revoke() below), and it clears the cache first, so a revocation applies
   * to the very next request; expiry is checked on every request from the cached row.
   */
  private readonly certCache = new Map<string, NonNullable<Awaited<ReturnType<typeof agents.findCertificateAgent>>>>();
  /** Bumped at every clear: a row read before a clear is not cached after it (a revocation may have come between). */
  private cacheGeneration = 0;
  /**
   * The first miss after a start fills the cache with every valid certificate in one query (after
   * a restart every agent comes back at once, each a lookup otherwise); undefined until then.
   */
  private warmed: Promise<void> | undefined;

  private clearCertificates(): void {
    this.certCache.clear();
    this.cacheGeneration++;
  }

  /** Drops every cached certificate (a revocation made on another replica: the next request reads the database). */
  forgetCertificates(): void {
    this.clearCertificates();
  }

  private warm(): Promise<void> {
    const generation = this.cacheGeneration;
    return agents.listValidCertificateAgents(this.d.db, this.d.clock.now(), CERT_CACHE_MAX).then(
      (rows) => {
        if (generation !== this.cacheGeneration) return;
        for (const r of rows) {
          const key = r.serial.toUpperCase();
          if (!this.certCache.has(key)) this.certCache.set(key, r);
        }
      },
      (err: unknown) => this.d.log.warn({ err }, 'cannot preload the certificates; looking them up one by one'),
    );
  }

  /** Authorises an mTLS request by the serial of its (CA-verified) client certificate. */
  async authenticate(serial: string, commonName: string | undefined): Promise<AgentPrincipal> {
    const key = serial.toUpperCase();
    let row = this.certCache.get(key);
    if (!row) {
      await (this.warmed ??= this.warm());
      row = this.certCache.get(key);
    }
    if (!row) {
      const generation = this.cacheGeneration;
      row = await agents.findCertificateAgent(this.d.db, key);
      if (row && row.cert_revoked_at === null && row.agent_revoked_at === null && generation === this.cacheGeneration) {
        if (this.certCache.size >= CERT_CACHE_MAX) this.clearCertificates();
        this.certCache.set(key, row);
      }
    }
    if (!row || row.agent_id !== commonName) throw unauthorized('the client certificate is not known to this control plane', 'unknown_certificate');
    if (row.cert_revoked_at !== null || row.agent_revoked_at !== null) throw forbidden('the client certificate has been revoked', 'certificate_revoked');
    if (row.not_after <= this.d.clock.now()) throw unauthorized('the client certificate has expired', 'certificate_expired');
    return { agentId: row.agent_id, aid: row.aid, cid: row.cid, role: row.role, nid: row.nid };
  }

  /** Agents with a renewal in progress: one at a time each. */
  private readonly renewing = new Set<string>();
  /** When each agent's newest certificate may be renewed, as this process last saw it (see sharedRenewals). */
  private readonly renewalWindows = new Map<string, { opensAt: number; notAfter: number }>();

  private rememberWindow(agentId: string, notBefore: number, notAfter: number) {
    const w = { opensAt: notAfter - (notAfter - notBefore) * this.d.config.renewWithinFraction, notAfter };
    if (this.renewalWindows.size >= 100_000) this.renewalWindows.clear();
    this.renewalWindows.set(agentId, w);
    return w;
  }

  /**
   * Issues a new certificate for an agent's new CSR. Rate-limited per agent, before any CSR work:
   * one renewal at a time, and only once its newest certificate has at most `renewWithinFraction`
   * of its lifetime left (agents renew in the last third), so an agent gets at most a couple of
   * certificates per lifetime however often it asks.
   */
  async renew(agent: AgentPrincipal, csr: string) {
    const { config, clock, db } = this.d;
    const inProgress = () => new TetherError('renewal_in_progress', 'a renewal for this agent is already in progress', { status: 429, retryable: true });
    if (this.renewing.has(agent.agentId)) throw inProgress();
    const shared = this.d.sharedRenewals === true;
    // Remembered per agent, so a storm of early renewals costs a map lookup each, not a query. A
    // newer certificate only moves the window later, so a remembered one that is not open yet
    // refuses for every replica; an open one is checked against the database when replicas share it.
    const remembered = this.renewalWindows.get(agent.agentId);
    if (shared && remembered && clock.now() < remembered.opensAt) throw this.tooEarly(remembered);
    const lockKey = `renew:${agent.agentId}`;
    if (shared && !(await addToWindow(db, lockKey, 1, 60_000, clock.now(), 1)).added) throw inProgress();
    this.renewing.add(agent.agentId);
    try {
      const now = clock.now();
      let window = shared ? undefined : remembered;
      if (!window) {
        const current = await agents.newestCertificate(db, agent.agentId);
        if (current) window = this.rememberWindow(agent.agentId, current.not_before, current.not_after);
      }
      if (window && now < window.opensAt) throw this.tooEarly(window);
      const cert = await issueAgentCertificate(this.d.ca, csr, agent, config.certificateTtlDays * 86400_000, now);
      await agents.insertCertificate(db, { serial: cert.serial, agent_id: agent.agentId, not_before: cert.notBefore, not_after: cert.notAfter, revoked_at: null, created_at: now });
      this.rememberWindow(agent.agentId, cert.notBefore, cert.notAfter);
      this.d.log.info({ agentId: agent.agentId }, 'certificate renewed');
      return { certificate: cert.certPem, expiresAt: iso(cert.notAfter)! };
    } finally {
      this.renewing.delete(agent.agentId);
      if (shared) await clearWindow(db, lockKey).catch((err: unknown) => this.d.log.warn({ err, agentId: agent.agentId }, 'renewal lock not freed (it lapses within a minute)'));
    }
  }

  private tooEarly(window: { opensAt: number; notAfter: number }) {
    return new TetherError(
      'renewal_too_early',
      `the certificate expires at ${iso(window.notAfter)}; renewal opens at ${iso(Math.ceil(window.opensAt))} (when ${Math.round(this.d.config.renewWithinFraction * 100)}% of its lifetime is left)`,
      { status: 429 },
    );
  }

  async revoke(aid: string, agentId: string) {
    this.clearCertificates();
    const revoked = await agents.revokeAgent(this.d.db, aid, agentId, this.d.clock.now());
    this.clearCertificates(); // and again: a lookup that ran before the revocation committed may have cached the row
    if (!revoked) {
      const a = await agents.getAgent(this.d.db, agentId);
      if (!a || a.aid !== aid) throw notFound(`agent ${agentId} does not exist`, 'agent_not_found');
    }
    this.d.log.warn({ agentId, aid }, 'agent revoked');
    if (revoked) {
      try {
        this.d.onAgentRevoked?.(agentId);
      } catch (err) {
        this.d.log.error({ err, agentId }, 'onAgentRevoked hook failed');
      }
    }
    const view = await this.get(aid, agentId);
    if (revoked && view.role === 'node') await this.d.onNodeLeft?.({ agentId, aid, cid: view.cid, role: 'node', nid: view.nid }).catch((err: unknown) => this.d.log.error({ err, agentId }, 'onNodeLeft hook failed'));
    return view;
  }

  async get(aid: string, agentId: string): Promise<AgentView> {
    const a = await agents.getAgent(this.d.db, agentId);
    if (!a || a.aid !== aid) throw notFound(`agent ${agentId} does not exist`, 'agent_not_found');
    return toAgentView(a, this.d.clock.now());
  }

  /** A page of an account's agents (by cluster, oldest first), filtered by cluster, role and status. */
  async list(aid: string, f: { cid?: string; role?: 'node' | 'cluster-agent'; status?: AgentView['status']; limit: number; cursor?: string }): Promise<{ agents: AgentView[]; nextCursor: string | null }> {
    const now = this.d.clock.now();
    const after = decodeCursor(f.cursor, z.tuple([z.string().max(100), z.number().int(), z.string().max(100)]));
    const status = f.status ? { is: f.status, healthySince: now - HEALTHY_BELOW_S * 1000, degradedSince: now - OFFLINE_FROM_S * 1000 } : undefined;
    const rows = await agents.listAgents(this.d.db, aid, { cid: f.cid, role: f.role, status, limit: f.limit + 1, after });
    const p = page(rows, f.limit, (a) => [a.cid, a.created_at, a.id], (a) => toAgentView(a, now));
    return { agents: p.items, nextCursor: p.nextCursor };
  }

  /** A page of an account's bootstrap tokens, newest first (never a secret). */
  async listBootstrapTokens(aid: string, f: { cid?: string; limit: number; cursor?: string }) {
    const after = decodeCursor(f.cursor, z.tuple([z.number().int(), z.string().max(100)]));
    const now = this.d.clock.now();
    const rows = await tokens.listBootstrapTokens(this.d.db, aid, { cid: f.cid, limit: f.limit + 1, after });
    const p = page(rows, f.limit, (t) => [t.created_at, t.id], (t) => ({
      id: t.id,
      cluster: t.cid,
      role: t.role,
      controlPlane: t.control_plane === 1,
      state: t.used_at !== null ? ('used' as const) : t.expires_at <= now ? ('expired' as const) : ('unused' as const),
      createdAt: iso(t.created_at)!,
      expiresAt: iso(t.expires_at)!,
      usedAt: iso(t.used_at),
      usedByAgent: t.used_by_agent,
    }));
    return { tokens: p.items, nextCursor: p.nextCursor };
  }

  /** The CA certificate agents verify the control plane with (public). */
  get caCertPem(): string {
    return this.d.ca.caCertPem;
  }
}

export function toAgentView(a: Awaited<ReturnType<typeof agents.getAgent>> & {}, now: number): AgentView {
  return {
    id: a.id,
    aid: a.aid,
    cid: a.cid,
    role: a.role,
    nid: a.nid,
    controlPlane: a.control_plane === 1,
    status: agentStatus(a.last_heartbeat_at, now),
    revoked: a.revoked_at !== null,
    lastHeartbeatAt: iso(a.last_heartbeat_at),
    secondsSinceHeartbeat: a.last_heartbeat_at === null ? null : Math.max(0, Math.round((now - a.last_heartbeat_at) / 100) / 10),
    version: a.version,
    metrics: a.metrics ? JSON.parse(a.metrics) : null,
    vpn: a.vpn ? JSON.parse(a.vpn) : null,
    createdAt: iso(a.created_at)!,
  };
}
