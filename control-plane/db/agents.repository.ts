import { sql } from 'kysely';
import type SQLite from 'better-sqlite3';
import { directOf, exclusive, handleOf, onBeforeClose, prepared, type Db } from './database.ts';
import type { AgentsTable, CertificatesTable } from './agents.table.ts';
import { outsideBarrier } from './durability.ts';
import { commitWrites } from './write-batch.ts';

export async function insertAgent(db: Db, a: Omit<AgentsTable, 'revoked_at' | 'last_heartbeat_at' | 'heartbeats' | 'version' | 'metrics' | 'vpn'>) {
  await db.insertInto('agents').values({ ...a, revoked_at: null, last_heartbeat_at: null, heartbeats: 0, version: null, metrics: null, vpn: null }).execute();
}

export async function getAgent(db: Db, id: string) {
  flushHeartbeats(db);
  return db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findActiveNode(db: Db, aid: string, cid: string, nid: string) {
  return db
    .selectFrom('agents')
    .selectAll()
    .where('aid', '=', aid)
    .where('cid', '=', cid)
    .where('nid', '=', nid)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
}

/** Heartbeat cut-offs of agentStatus(): healthy after healthySince, degraded down to degradedSince, offline before (or never). */
export interface StatusCutoffs {
  healthySince: number;
  degradedSince: number;
}

/** A keyset page position: agents sort by (cid, created_at, id). */
export type AgentsAfter = [cid: string, createdAt: number, id: string];

/**
 * An account's agents by cluster, oldest first; a page of `limit` after `after` when given (the
 * admin list), all of them otherwise (the VPN's peers of a cluster). Served by agents_account.
 */
export async function listAgents(
  db: Db,
  aid: string,
  filter: { cid?: string; role?: AgentsTable['role']; status?: { is: 'healthy' | 'degraded' | 'offline' } & StatusCutoffs; limit?: number; after?: AgentsAfter } = {},
) {
  flushHeartbeats(db);
  let q = db.selectFrom('agents').selectAll().where('aid', '=', aid);
  if (filter.cid) q = q.where('cid', '=', filter.cid);
  if (filter.role) q = q.where('role', '=', filter.role);
  const st = filter.status;
  if (st?.is === 'healthy') q = q.where('last_heartbeat_at', '>', st.healthySince);
  if (st?.is === 'degraded') q = q.where('last_heartbeat_at', '<=', st.healthySince).where('last_heartbeat_at', '>', st.degradedSince);
  if (st?.is === 'offline') q = q.where((eb) => eb.or([eb('last_heartbeat_at', 'is', null), eb('last_heartbeat_at', '<=', st.degradedSince)]));
  if (filter.after) {
    const [cid, createdAt, id] = filter.after;
    q = q.where(sql<boolean>`(cid, created_at, id) > (${cid}, ${createdAt}, ${id})`);
  }
  q = q.orderBy('cid').orderBy('created_at').orderBy('id');
  if (filter.limit !== undefined) q = q.limit(filter.limit);
  return q.execute();
}

/**
 * An account's unrevoked agents counted per cluster and role by status (the console's overview):
 * one aggregate over the account's agents, nothing per agent reaches JavaScript.
 */
export async function countAgentsByCluster(db: Db, aid: string, c: StatusCutoffs): Promise<{ cid: string; role: AgentsTable['role']; healthy: number; degraded: number; offline: number }[]> {
  flushHeartbeats(db);
  const r = await sql<{ cid: string; role: AgentsTable['role']; healthy: number | null; degraded: number | null; total: number }>`SELECT cid, role,
      COUNT(CASE WHEN last_heartbeat_at > ${c.healthySince} THEN 1 END) AS healthy,
      COUNT(CASE WHEN last_heartbeat_at <= ${c.healthySince} AND last_heartbeat_at > ${c.degradedSince} THEN 1 END) AS degraded,
      COUNT(*) AS total
    FROM agents WHERE aid = ${aid} AND revoked_at IS NULL GROUP BY cid, role ORDER BY cid, role`.execute(db);
  return r.rows.map((row) => {
    const healthy = Number(row.healthy ?? 0);
    const degraded = Number(row.degraded ?? 0);
    return { cid: row.cid, role: row.role, healthy, degraded, offline: Number(row.total) - healthy - degraded };
  });
}

/** Revokes an agent and every certificate it holds (its next request is refused), and ends the leases it holds. */
export async function revokeAgent(db: Db, aid: string, id: string, now: number): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await trx.updateTable('agents').set({ revoked_at: now }).where('aid', '=', aid).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) return false;
    await trx.updateTable('certificates').set({ revoked_at: now }).where('agent_id', '=', id).where('revoked_at', 'is', null).execute();
    // Its running commands' leases end now: the reaper requeues them (or fails them, no attempts left).
    await trx.updateTable('commands').set({ lease_expires_at: now }).where('claimed_by', '=', id).where('state', '=', 'running').execute();
    return true;
  });
}

/** The agent's unrevoked certificate that lives longest (what a renewal would replace). */
export async function newestCertificate(db: Db, agentId: string) {
  return db
    .selectFrom('certificates')
    .select(['serial', 'not_before', 'not_after'])
    .where('agent_id', '=', agentId)
    .where('revoked_at', 'is', null)
    .orderBy('not_after', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function insertCertificate(db: Db, c: CertificatesTable) {
  await db.insertInto('certificates').values(c).execute();
}

/** The certificate with its agent, for authorising an mTLS request. */
const certStmts = prepared((sqlite) => ({
  bySerial: sqlite.prepare(
    `SELECT certificates.serial, certificates.not_after, certificates.revoked_at AS cert_revoked_at,
       agents.id AS agent_id, agents.aid, agents.cid, agents.role, agents.nid, agents.control_plane,
       agents.revoked_at AS agent_revoked_at
     FROM certificates INNER JOIN agents ON agents.id = certificates.agent_id
     WHERE certificates.serial = ?`,
  ),
  valid: sqlite.prepare(
    `SELECT certificates.serial, certificates.not_after, certificates.revoked_at AS cert_revoked_at,
       agents.id AS agent_id, agents.aid, agents.cid, agents.role, agents.nid, agents.control_plane,
       agents.revoked_at AS agent_revoked_at
     FROM certificates INNER JOIN agents ON agents.id = certificates.agent_id
     WHERE certificates.revoked_at IS NULL AND agents.revoked_at IS NULL AND certificates.not_after > ?
     LIMIT ?`,
  ),
}));

type CertificateAgent = {
  serial: string;
  not_after: number;
  cert_revoked_at: number | null;
  agent_id: string;
  aid: string;
  cid: string;
  role: AgentsTable['role'];
  nid: string | null;
  control_plane: AgentsTable['control_plane'];
  agent_revoked_at: number | null;
};

/** What the identity check reads of a certificate and its agent (the PostgreSQL side of both lookups below). */
const CERTIFICATE_AGENT_COLUMNS = [
  'certificates.serial', 'certificates.not_after', 'certificates.revoked_at as cert_revoked_at', 'agents.id as agent_id', 'agents.aid', 'agents.cid',
  'agents.role', 'agents.nid', 'agents.control_plane', 'agents.revoked_at as agent_revoked_at',
] as const;

/**
 * The agent behind a certificate serial. Every agent's first request after a control-plane
 * restart comes here (the identity cache starts empty), so it is a prepared statement.
 */
export async function findCertificateAgent(db: Db, serial: string): Promise<CertificateAgent | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) {
    // PostgreSQL: the same join through Kysely.
    return db
      .selectFrom('certificates')
      .innerJoin('agents', 'agents.id', 'certificates.agent_id')
      .select(CERTIFICATE_AGENT_COLUMNS)
      .where('certificates.serial', '=', serial)
      .executeTakeFirst();
  }
  return exclusive(db, sqlite, () => certStmts(sqlite).bySerial.get(serial) as CertificateAgent | undefined);
}

/**
 * Every certificate that can authenticate at `now` (neither it nor its agent revoked, not
 * expired), with its agent, at most `limit`: one query that fills the identity cache after a start,
 * instead of one lookup per returning agent.
 */
export async function listValidCertificateAgents(db: Db, now: number, limit: number): Promise<CertificateAgent[]> {
  const sqlite = directOf(db);
  if (!sqlite) {
    return db
      .selectFrom('certificates')
      .innerJoin('agents', 'agents.id', 'certificates.agent_id')
      .select(CERTIFICATE_AGENT_COLUMNS)
      .where('certificates.revoked_at', 'is', null)
      .where('agents.revoked_at', 'is', null)
      .where('certificates.not_after', '>', now)
      .limit(limit)
      .execute();
  }
  return exclusive(db, sqlite, () => certStmts(sqlite).valid.all(now, limit) as CertificateAgent[]);
}

/**
 * What one heartbeat changes (agents send only what differs from what was acknowledged): a field
 * that is null keeps the stored value; `metrics` is a JSON merge patch over the stored metrics.
 */
type Heartbeat = { now: number; version: string | null; metrics: Record<string, unknown> | null; vpn: string | null };
type Pending = Heartbeat & { n: number };

/** A later beat's fields win; fields it leaves out keep the earlier beat's. */
function mergeBeats(prev: Pending | undefined, hb: Heartbeat): Pending {
  if (!prev) return { ...hb, n: 1 };
  return {
    now: hb.now,
    version: hb.version ?? prev.version,
    metrics: prev.metrics && hb.metrics ? { ...prev.metrics, ...hb.metrics } : (hb.metrics ?? prev.metrics),
    vpn: hb.vpn ?? prev.vpn,
    n: prev.n + 1,
  };
}

const UPDATE_HEARTBEAT = `UPDATE agents SET last_heartbeat_at = @now, version = COALESCE(@version, version),
  metrics = CASE WHEN @metrics IS NULL THEN metrics ELSE json_patch(COALESCE(metrics, '{}'), @metrics) END,
  vpn = COALESCE(@vpn, vpn), heartbeats = heartbeats + @n WHERE id = @id`;
const params = (id: string, hb: Pending) => ({ id, now: hb.now, version: hb.version, metrics: hb.metrics ? JSON.stringify(hb.metrics) : null, vpn: hb.vpn, n: hb.n });

/**
 * Heartbeats are written in batches: one transaction per window of at most HEARTBEAT_BATCH_MS
 * (or HEARTBEAT_BATCH_MAX agents), one UPDATE per agent with its latest values and the count of
 * beats since the last batch. A commit per heartbeat was most of a heartbeat's storage cost.
 *
 * The batch is outside the durability barrier (durability.ts, "What the barrier does not
 * cover"): its commits are not waited for by any answer, the heartbeat's included, and do not
 * count as changes an answer must wait for. What a crash can lose: after `kill -9`, the
 * heartbeats of the last window (up to 50 ms); after a power cut, every batch since the last WAL
 * sync (another answer's sync or a checkpoint), i.e. the agents' last-seen time, version, metrics
 * and VPN state, and those beats of the counter. That is liveness data, refreshed by every agent
 * every 5 s, and what an agent sends only when it changes it sends again whole on its first
 * connection to the restarted control plane (runtime.ts), so nothing is lost for good: at worst
 * an agent looks older until its next beat. Nothing a heartbeat does for the queue waits here:
 * lease extensions and cancellation lookups are written and read at once
 * (commands.repository.ts), so a lease never lags behind the agent's heartbeats, and a heartbeat
 * that extends a lease awaits the barrier (queue.service.ts).
 *
 * Reads of the agents table in this file flush first (an agent's status is computed from the last
 * heartbeat, and "one heartbeat makes it healthy again" must hold for the next read), as does
 * closing the database. A batch that fails (disk full) is dropped; the heartbeats after it are
 * written one at a time, and refused with the storage error, until one of them succeeds.
 */
const HEARTBEAT_BATCH_MS = 50;
const HEARTBEAT_BATCH_MAX = 2000;

class HeartbeatBatch {
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  failure: unknown = undefined;
  private readonly sqlite: SQLite.Database;
  private readonly update: SQLite.Statement;
  private readonly writeAll: (rows: Map<string, Pending>) => void;

  constructor(sqlite: SQLite.Database) {
    this.sqlite = sqlite;
    this.update = sqlite.prepare(UPDATE_HEARTBEAT);
    const transaction = sqlite.transaction((rows: Map<string, Pending>) => {
      for (const [id, hb] of rows) this.update.run(params(id, hb));
    });
    this.writeAll = (rows) => outsideBarrier(sqlite, () => transaction(rows));
    onBeforeClose(sqlite, () => this.flush());
  }

  /** After a failed batch: this heartbeat is written at once, and its error (if any) is the caller's. */
  writeNow(id: string, hb: Heartbeat) {
    outsideBarrier(this.sqlite, () => this.update.run(params(id, { ...hb, n: 1 })));
    this.failure = undefined;
  }

  add(id: string, hb: Heartbeat) {
    this.pending.set(id, mergeBeats(this.pending.get(id), hb));
    if (this.pending.size >= HEARTBEAT_BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), HEARTBEAT_BATCH_MS).unref();
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size === 0 || !this.sqlite.open) return;
    // The direct writes' batch first (write-batch.ts): the heartbeats' own transaction is not part of it.
    commitWrites(this.sqlite);
    // Never inside a Kysely transaction still open on the connection (it would take the batch with
    // it if it rolled back): try again shortly.
    if (this.sqlite.inTransaction) {
      this.timer = setTimeout(() => this.flush(), 5).unref();
      return;
    }
    const rows = this.pending;
    this.pending = new Map();
    try {
      this.writeAll(rows);
      this.failure = undefined;
    } catch (err) {
      this.failure = err;
    }
  }
}

const batches = prepared((sqlite) => new HeartbeatBatch(sqlite));

/** Writes the pending heartbeats now (before a read of the agents table). */
export function flushHeartbeats(db: Db) {
  const sqlite = handleOf(db); // reads inside a Kysely transaction flush through the root handle's batch already
  if (sqlite?.open) batches(sqlite).flush();
}

/**
 * PostgreSQL twin of UPDATE_HEARTBEAT, one autocommit UPDATE per heartbeat (no batch: several
 * replicas write the same table, and a per-process batch would make "one heartbeat makes it
 * healthy again" depend on which replica is asked). last_heartbeat_at is the caller's clock, which
 * on PostgreSQL is the database's (db/clock.ts). The metrics merge patch: json_patch (RFC 7396) on
 * SQLite; here `||` of the two objects with null members removed, which is the same for the flat
 * objects agents send (a null member deletes the key; stored metrics never hold a null).
 */
async function recordHeartbeatPostgres(db: Db, id: string, hb: Heartbeat) {
  const metrics = hb.metrics ? JSON.stringify(hb.metrics) : null;
  await sql`UPDATE agents SET last_heartbeat_at = ${hb.now}, version = COALESCE(${hb.version}::text, version),
      metrics = CASE WHEN ${metrics}::text IS NULL THEN metrics
                ELSE jsonb_strip_nulls(COALESCE(metrics, '{}')::jsonb || ${metrics}::jsonb)::text END,
      vpn = COALESCE(${hb.vpn}::text, vpn), heartbeats = heartbeats + 1
    WHERE id = ${id}`.execute(db);
}

export async function recordHeartbeat(db: Db, id: string, hb: Heartbeat) {
  const sqlite = directOf(db);
  if (!sqlite) return recordHeartbeatPostgres(db, id, hb);
  const batch = batches(sqlite);
  if (batch.failure !== undefined) commitWrites(sqlite);
  if (batch.failure !== undefined && !sqlite.inTransaction) batch.writeNow(id, hb);
  else batch.add(id, hb);
}

/**
 * Unrevoked agents counted by the last-heartbeat cut-offs of `agentStatus` (for the agents-by-status
 * gauge): counted in SQL, so a scrape does not carry every agent's row into JavaScript.
 */
export async function countAgentsByHeartbeatAge(db: Db, healthySince: number, degradedSince: number): Promise<{ healthy: number; degraded: number; offline: number }> {
  flushHeartbeats(db);
  // COUNT(CASE …) rather than SUM(<comparison>): the same on both dialects (PostgreSQL has no SUM of booleans).
  const r = await sql<{ healthy: number | null; degraded: number | null; total: number }>`SELECT
      COUNT(CASE WHEN last_heartbeat_at > ${healthySince} THEN 1 END) AS healthy,
      COUNT(CASE WHEN last_heartbeat_at <= ${healthySince} AND last_heartbeat_at > ${degradedSince} THEN 1 END) AS degraded,
      COUNT(*) AS total
    FROM agents WHERE revoked_at IS NULL`.execute(db);
  const row = r.rows[0] ?? { healthy: 0, degraded: 0, total: 0 };
  const healthy = Number(row.healthy ?? 0);
  const degraded = Number(row.degraded ?? 0);
  return { healthy, degraded, offline: Number(row.total) - healthy - degraded };
}

/** The versions a cluster's active cluster agents last reported, with their last heartbeat (what may claim its next job). */
export async function clusterAgentVersions(db: Db, aid: string, cid: string): Promise<{ version: string | null; last_heartbeat_at: number | null }[]> {
  return db
    .selectFrom('agents')
    .select(['version', 'last_heartbeat_at'])
    .where('aid', '=', aid)
    .where('cid', '=', cid)
    .where('role', '=', 'cluster-agent')
    .where('revoked_at', 'is', null)
    .execute();
}
