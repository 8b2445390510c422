import { sql } from 'kysely';
import type SQLite from 'better-sqlite3';
import type { CommandState } from '../../common/wire.ts';
import type { CommandType } from '../../common/specs.ts';
import { directOf, exclusive, isPostgres, prepared, sqliteOf, type Db } from './database.ts';
import { batched } from './write-batch.ts';
import type { CommandsTable } from './commands.table.ts';
import type { Selectable } from 'kysely';

export type CommandRow = Selectable<CommandsTable>;

/**
 * The claim's pick: the oldest queued command of one target, through the commands_queued partial
 * index. Its parameters are written `+?`, the same values: bound as plain `?`, SQLite re-prepared
 * this statement at every call (its planner's check of the partial index makes the plan depend on
 * the bound values), 10-11 µs a call against 3.6-4.5 µs for the same plan (issue 18, "The command
 * path, second pass" in docs/performance.md). The unary plus leaves the comparisons and the index
 * use as they were (storage.test.ts checks the plan).
 */
export const PICK_SQL = `SELECT id FROM commands WHERE state = 'queued' AND aid = +? AND cid = +? AND nid IS +? ORDER BY id LIMIT 1`;

/**
 * The hot paths' statements (submit, claim, result, heartbeat, cancellation lookup), prepared once
 * and run synchronously through better-sqlite3 (see database.ts for why not through Kysely). Each
 * is the SQL the Kysely builder below produced, written out.
 */
const stmts = prepared((s) => ({
  byKey: s.prepare(`SELECT * FROM commands WHERE aid = ? AND idempotency_key = ?`),
  insert: s.prepare(
    `INSERT INTO commands (aid, cid, nid, type, spec, state, idempotency_key, timeout_seconds, max_attempts, attempts, created_at)
     VALUES (@aid, @cid, @nid, @type, @spec, 'queued', @idempotencyKey, @timeoutSeconds, @maxAttempts, 0, @now) RETURNING *`,
  ),
  byId: s.prepare(`SELECT * FROM commands WHERE id = ?`),
  // The claim, in two steps run back to back with nothing in between (synchronous, one connection):
  // the oldest queued command of the target (a read, through the commands_queued index), then the
  // UPDATE that re-checks state = 'queued' and that the claiming agent is not revoked. An empty queue (most polls) costs a read, not a write.
  pick: s.prepare(PICK_SQL).pluck(),
  claim: s.prepare(
    `UPDATE commands SET state = 'running', attempts = attempts + 1, lease_id = @leaseId, lease_expires_at = @leaseExpiresAt,
       claimed_by = @agentId, claimed_at = @now
     WHERE id = @id AND state = 'queued'
       AND NOT EXISTS (SELECT 1 FROM agents WHERE agents.id = @agentId AND agents.revoked_at IS NOT NULL) RETURNING *`,
  ),
  completeFinal: s.prepare(
    `UPDATE commands SET state = @state, outputs = @outputs, error = @error, finished_at = @now, lease_expires_at = NULL
     WHERE id = @id AND claimed_by = @agentId AND lease_id = @leaseId AND state = 'running'
     RETURNING id, aid, cid, nid, state, type`,
  ),
  completeRetry: s.prepare(
    `UPDATE commands SET
       state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
       error = @error,
       outputs = CASE WHEN attempts < max_attempts THEN outputs ELSE @outputs END,
       lease_id = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_id END,
       lease_expires_at = NULL,
       claimed_by = CASE WHEN attempts < max_attempts THEN NULL ELSE claimed_by END,
       finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE @now END
     WHERE id = @id AND claimed_by = @agentId AND lease_id = @leaseId AND state = 'running'
     RETURNING id, aid, cid, nid, state, type`,
  ),
  extend: s.prepare(
    `UPDATE commands SET lease_expires_at = min(@until, claimed_at + timeout_seconds * 1000 + @graceMs)
     WHERE claimed_by = @agentId AND state = 'running' AND id IN (SELECT value FROM json_each(@ids))`,
  ),
  cancelRequested: s.prepare(`SELECT id FROM commands WHERE claimed_by = ? AND state = 'running' AND cancel_requested_at IS NOT NULL`).pluck(),
  release: s.prepare(
    `UPDATE commands SET state = 'queued', attempts = attempts - 1, lease_id = NULL, lease_expires_at = NULL, claimed_by = NULL, claimed_at = NULL
     WHERE id = ? AND lease_id = ? AND state = 'running'`,
  ),
  cancelCandidates: s.prepare(`SELECT DISTINCT claimed_by FROM commands WHERE state = 'running' AND cancel_requested_at IS NOT NULL`).pluck(),
}));

/**
 * The row a write with RETURNING produced. Never `.get()` for a write: it steps the statement once
 * and resets it, and the autocommit's COMMIT happens at that reset, whose error (SQLITE_FULL on a
 * full disk) better-sqlite3 does not raise; the row would be answered as stored while it was rolled
 * back. `.all()` steps to the end, so a failed commit throws (storage_unavailable).
 */
function firstRow(sqlite: SQLite.Database, stmt: SQLite.Statement, params: unknown): unknown {
  // In the turn's write batch (write-batch.ts) when the durability barrier is on.
  return batched(sqlite, () => stmt.all(params))[0];
}

/**
 * Agents that may hold a running command whose cancellation was requested: a superset, so the
 * per-heartbeat and per-poll lookup runs only for them (almost never). Filled from the database on
 * first use (a restart keeps pending cancellations), by requestCancel() below (the only writer of
 * cancel_requested_at) and by a claim of a command that carries one (a retryable failure requeues
 * a command with its request); an agent leaves the set when its lookup finds nothing.
 */
const cancelCandidates = new WeakMap<SQLite.Database, Set<string>>();
function candidates(sqlite: SQLite.Database): Set<string> {
  let set = cancelCandidates.get(sqlite);
  if (!set) {
    set = new Set(stmts(sqlite).cancelCandidates.all() as string[]);
    cancelCandidates.set(sqlite, set);
  }
  return set;
}

export interface NewCommand {
  aid: string;
  cid: string;
  nid: string | null;
  type: CommandsTable['type'];
  spec: string;
  idempotencyKey: string | null;
  timeoutSeconds: number;
  maxAttempts: number;
  now: number;
}

/** The account has no such cluster (insertCommand: the foreign key commands_cluster_fk refused the row). */
export class ClusterNotFound extends Error {
  constructor(cid: string) {
    super(`cluster ${cid} does not exist`);
  }
}

/**
 * Inserts a command, or returns the existing one with the same idempotency key (same account);
 * throws ClusterNotFound when the account has no cluster `cid` (no separate lookup first: the
 * foreign key commands_cluster_fk checks it inside the INSERT).
 * Runs in one transaction so two submissions with one key make one command.
 */
export async function insertCommand(db: Db, c: NewCommand): Promise<{ row: CommandRow; created: boolean }> {
  const sqlite = directOf(db);
  if (!sqlite) return insertCommandPostgres(db, c);
  // The lookup and the insert run back to back with nothing in between (synchronous); the unique
  // index commands_idempotency backs it anyway. One INSERT needs no explicit transaction.
  return exclusive(db, sqlite, () => {
    const q = stmts(sqlite);
    if (c.idempotencyKey !== null) {
      const existing = q.byKey.get(c.aid, c.idempotencyKey) as CommandRow | undefined;
      if (existing) return { row: existing, created: false };
    }
    try {
      return { row: firstRow(sqlite, q.insert, c) as CommandRow, created: true };
    } catch (err) {
      if ((err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new ClusterNotFound(c.cid);
      throw err;
    }
  });
}

/**
 * PostgreSQL twin of insertCommand. Replicas submit at once, so the lookup-then-insert above would
 * race; instead one INSERT … ON CONFLICT DO NOTHING against the unique index commands_idempotency
 * (the index's predicate repeated, so PostgreSQL infers it): of two submissions with one key
 * exactly one inserts, the other gets no row and reads the winner's (committed: the conflict
 * waited for it).
 */
async function insertCommandPostgres(db: Db, c: NewCommand): Promise<{ row: CommandRow; created: boolean }> {
  const inserted = await db
    .insertInto('commands')
    .values({
      aid: c.aid, cid: c.cid, nid: c.nid, type: c.type, spec: c.spec, state: 'queued', idempotency_key: c.idempotencyKey,
      timeout_seconds: c.timeoutSeconds, max_attempts: c.maxAttempts, attempts: 0, created_at: c.now,
    })
    .onConflict((oc) => oc.columns(['aid', 'idempotency_key']).where('idempotency_key', 'is not', null).doNothing())
    .returningAll()
    .executeTakeFirst()
    .catch((err: unknown) => {
      // foreign_key_violation: commands_cluster_fk, the only foreign key of commands.
      if ((err as { code?: unknown }).code === '23503') throw new ClusterNotFound(c.cid);
      throw err;
    });
  if (inserted) return { row: inserted, created: true };
  const existing = await db.selectFrom('commands').selectAll().where('aid', '=', c.aid).where('idempotency_key', '=', c.idempotencyKey).executeTakeFirstOrThrow();
  return { row: existing, created: false };
}

export async function getCommand(db: Db, aid: string, id: number) {
  return db.selectFrom('commands').selectAll().where('aid', '=', aid).where('id', '=', id).executeTakeFirst();
}

export async function getCommandById(db: Db, id: number): Promise<CommandRow | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return db.selectFrom('commands').selectAll().where('id', '=', id).executeTakeFirst(); // PostgreSQL
  return exclusive(db, sqlite, () => stmts(sqlite).byId.get(id) as CommandRow | undefined);
}

/** A command's columns without its outputs (list views: outputs can be large, and are read one job at a time). */
export type CommandSummaryRow = Omit<CommandRow, 'outputs'>;

export async function listCommands(db: Db, aid: string, f: { cid?: string; state?: CommandState; type?: CommandType; limit: number; beforeId?: number }): Promise<CommandSummaryRow[]> {
  let q = db
    .selectFrom('commands')
    .select([
      'id', 'aid', 'cid', 'nid', 'type', 'spec', 'state', 'idempotency_key', 'timeout_seconds', 'max_attempts', 'attempts',
      'lease_id', 'lease_expires_at', 'claimed_by', 'created_at', 'claimed_at', 'finished_at', 'error', 'cancel_requested_at',
    ])
    .where('aid', '=', aid);
  if (f.cid) q = q.where('cid', '=', f.cid);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.type) q = q.where('type', '=', f.type);
  if (f.beforeId) q = q.where('id', '<', f.beforeId);
  return q.orderBy('id', 'desc').limit(f.limit).execute();
}

/** An account's commands counted by state (the console's overview; commands_account_state is a covering index for it). */
export async function countByStateOf(db: Db, aid: string): Promise<{ state: CommandState; n: number }[]> {
  const rows = await db.selectFrom('commands').select(['state', (eb) => eb.fn.countAll<number>().as('n')]).where('aid', '=', aid).groupBy('state').execute();
  return rows.map((r) => ({ state: r.state, n: Number(r.n) }));
}

/** An account's most recent failed or timed-out commands, newest first (the partial index commands_failures). */
export async function recentFailures(db: Db, aid: string, limit: number) {
  return db
    .selectFrom('commands')
    .select(['id', 'cid', 'nid', 'type', 'state', 'error', 'attempts', 'created_at', 'finished_at'])
    .where('aid', '=', aid)
    // Literal, not bound: SQLite uses a partial index only for the very term it was made with.
    .where(sql<boolean>`state IN ('failed', 'timed_out')`)
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

export async function countByState(db: Db) {
  return db.selectFrom('commands').select(['state', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('state').execute();
}

/** Cancels a queued command at once; marks a running one for its agent to cancel. */
export async function requestCancel(db: Db, aid: string, id: number, now: number): Promise<CommandRow | undefined> {
  return db.transaction().execute(async (trx) => {
    const queued = await trx
      .updateTable('commands')
      .set({ state: 'cancelled', cancel_requested_at: now, finished_at: now, lease_id: null, lease_expires_at: null })
      .where('aid', '=', aid)
      .where('id', '=', id)
      .where('state', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    if (queued) return queued;
    await trx
      .updateTable('commands')
      .set({ cancel_requested_at: now })
      .where('aid', '=', aid)
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('cancel_requested_at', 'is', null)
      .execute();
    const row = await trx.selectFrom('commands').selectAll().where('aid', '=', aid).where('id', '=', id).executeTakeFirst();
    // Marked before the commit: the agent's next heartbeat or poll looks the cancellation up.
    // (PostgreSQL keeps no candidate set: cancelRequestedFor always looks.)
    if (row?.state === 'running' && row.claimed_by && !isPostgres(db)) candidates(sqliteOf(db)).add(row.claimed_by);
    return row;
  });
}

export type Completion =
  | { kind: 'final'; state: 'succeeded' | 'failed' | 'cancelled' | 'timed_out'; outputs: string | null; error: string | null }
  /** A retryable failure: queued again while attempts are left, else failed with these outputs (a flow's step reports). */
  | { kind: 'retry'; error: string; outputs?: string | null };

/**
 * Applies an agent's report for the attempt identified by (agent, lease). Fenced: it changes the
 * row only while that attempt is the current one and still running, so a duplicate or a report
 * from an expired attempt updates nothing. Returns the updated row, or undefined if fenced off.
 */
/** What an applied result returns: enough to notify, log and tell listeners what ended. */
type Ended = Pick<CommandRow, 'id' | 'aid' | 'cid' | 'nid' | 'state' | 'type'>;

export async function completeAttempt(
  db: Db,
  f: { id: number; agentId: string; leaseId: string; now: number },
  c: Completion,
): Promise<Ended | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return completeAttemptPostgres(db, f, c);
  return exclusive(db, sqlite, () => {
    const q = stmts(sqlite);
    const p = { id: f.id, agentId: f.agentId, leaseId: f.leaseId, now: f.now, error: c.error };
    return (c.kind === 'retry' ? firstRow(sqlite, q.completeRetry, { ...p, outputs: c.outputs ?? null }) : firstRow(sqlite, q.completeFinal, { ...p, state: c.state, outputs: c.outputs })) as Ended | undefined;
  });
}

/**
 * PostgreSQL twin of completeFinal/completeRetry: the same single UPDATE, fenced the same way (the
 * WHERE names this agent, this lease and state running; the row lock the UPDATE takes makes a
 * concurrent second report or the reaper see the first one's result and match nothing).
 */
async function completeAttemptPostgres(db: Db, f: { id: number; agentId: string; leaseId: string; now: number }, c: Completion) {
  const fence = sql`WHERE id = ${f.id} AND claimed_by = ${f.agentId} AND lease_id = ${f.leaseId} AND state = 'running' RETURNING id, aid, cid, nid, state, type`;
  if (c.kind === 'final') {
    const r = await sql<Ended>`UPDATE commands SET state = ${c.state}, outputs = ${c.outputs}::text, error = ${c.error}::text, finished_at = ${f.now}::bigint, lease_expires_at = NULL ${fence}`.execute(db);
    return r.rows[0];
  }
  const outputs = c.outputs ?? null;
  const r = await sql<Ended>`UPDATE commands SET
      state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
      error = ${c.error}::text,
      outputs = CASE WHEN attempts < max_attempts THEN outputs ELSE ${outputs}::text END,
      lease_id = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_id END,
      lease_expires_at = NULL,
      claimed_by = CASE WHEN attempts < max_attempts THEN NULL ELSE claimed_by END,
      finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ${f.now}::bigint END
    ${fence}`.execute(db);
  return r.rows[0];
}

/**
 * Heartbeat: extends the leases of the commands this agent holds, capped at the command's
 * deadline (claim + timeout + grace) so a hung but heartbeating agent cannot keep one forever.
 */
export async function extendLeases(db: Db, agentId: string, ids: number[], until: number, graceMs: number) {
  if (ids.length === 0) return;
  const sqlite = directOf(db);
  if (!sqlite) {
    // PostgreSQL twin of `extend`: LEAST for SQLite's two-argument min(), an array for json_each.
    await sql`UPDATE commands SET lease_expires_at = LEAST(${until}::bigint, claimed_at + timeout_seconds * 1000 + ${graceMs}::bigint)
      WHERE claimed_by = ${agentId} AND state = 'running' AND id = ANY(${ids}::bigint[])`.execute(db);
    return;
  }
  await exclusive(db, sqlite, () => stmts(sqlite).extend.run({ agentId, until, graceMs, ids: JSON.stringify(ids) }));
}

/** Running commands of this agent whose cancellation was requested. */
export async function cancelRequestedFor(db: Db, agentId: string): Promise<number[]> {
  const sqlite = directOf(db);
  if (!sqlite) {
    // PostgreSQL: always looked up (through the commands_running index). A cancellation may be
    // requested through another replica, so no process can keep the candidate set above.
    const rows = await db.selectFrom('commands').select('id').where('claimed_by', '=', agentId).where('state', '=', 'running').where('cancel_requested_at', 'is not', null).execute();
    return rows.map((r) => r.id);
  }
  const set = candidates(sqlite);
  if (!set.has(agentId)) return [];
  return exclusive(db, sqlite, () => {
    const ids = stmts(sqlite).cancelRequested.all(agentId) as number[];
    if (ids.length === 0) set.delete(agentId);
    return ids;
  });
}

/**
 * Ends every attempt whose lease has expired: past its deadline it is timed out, when cancelled
 * it is cancelled, with attempts left it is queued again (lease cleared: the old attempt is
 * fenced off), otherwise it fails.
 */
export async function expireLeases(db: Db, now: number) {
  const error = (code: string, message: string) => JSON.stringify({ code, message, retryable: false });
  // PostgreSQL infers a parameter's type from its place; in a CASE branch it would be text.
  const at = isPostgres(db) ? sql<number>`${now}::bigint` : sql<number>`${now}`;
  return db
    .updateTable('commands')
    .set((eb) => {
      const deadlinePassed = sql<boolean>`claimed_at + timeout_seconds * 1000 <= ${at}`;
      const newState = eb
        .case()
        .when(deadlinePassed).then(sql<CommandState>`'timed_out'`)
        .when('cancel_requested_at', 'is not', null).then(sql<CommandState>`'cancelled'`)
        .when('attempts', '<', eb.ref('max_attempts')).then(sql<CommandState>`'queued'`)
        .else(sql<CommandState>`'failed'`)
        .end();
      const requeue = sql<boolean>`(NOT (${deadlinePassed}) AND cancel_requested_at IS NULL AND attempts < max_attempts)`;
      return {
        state: newState,
        error: eb
          .case()
          .when(deadlinePassed).then(error('timed_out', 'the command ran past its timeout and its agent did not report'))
          .when('cancel_requested_at', 'is not', null).then(error('cancelled', 'cancelled; its agent did not confirm before the lease expired'))
          .else(error('lease_expired', 'the agent stopped renewing its lease (no heartbeat)'))
          .end(),
        lease_id: sql<string | null>`CASE WHEN ${requeue} THEN NULL ELSE lease_id END`,
        claimed_by: sql<string | null>`CASE WHEN ${requeue} THEN NULL ELSE claimed_by END`,
        lease_expires_at: null,
        finished_at: sql<number | null>`CASE WHEN ${requeue} THEN NULL ELSE ${at} END`,
      };
    })
    .where('state', '=', 'running')
    .where('lease_expires_at', '<=', now)
    .returningAll()
    .execute();
}

/** The earliest lease expiry, so the reaper can sleep exactly until then. */
export async function nextLeaseExpiry(db: Db): Promise<number | null> {
  const r = await db
    .selectFrom('commands')
    .select((eb) => eb.fn.min('lease_expires_at').as('t'))
    .where('state', '=', 'running')
    .executeTakeFirst();
  return r?.t === null || r?.t === undefined ? null : Number(r.t);
}

/** Gives back a claim that was never delivered: queued again, the attempt not counted. */
export async function releaseClaim(db: Db, id: number, leaseId: string) {
  const sqlite = directOf(db);
  if (!sqlite) {
    await sql`UPDATE commands SET state = 'queued', attempts = attempts - 1, lease_id = NULL, lease_expires_at = NULL, claimed_by = NULL, claimed_at = NULL
      WHERE id = ${id} AND lease_id = ${leaseId} AND state = 'running'`.execute(db); // PostgreSQL: the same statement
    return;
  }
  await exclusive(db, sqlite, () => stmts(sqlite).release.run(id, leaseId));
}

/** The claim on the direct path (see claim.ts); undefined when the target has nothing queued. */
export function claimDirect(
  sqlite: SQLite.Database,
  target: { aid: string; cid: string; nid: string | null },
  claim: { agentId: string; leaseId: string | (() => string); leaseExpiresAt: number; now: number },
): CommandRow | undefined {
  const q = stmts(sqlite);
  const id = q.pick.get(target.aid, target.cid, target.nid) as number | undefined;
  if (id === undefined) return undefined;
  const leaseId = typeof claim.leaseId === 'function' ? claim.leaseId() : claim.leaseId;
  const row = firstRow(sqlite, q.claim, { id, agentId: claim.agentId, leaseId, leaseExpiresAt: claim.leaseExpiresAt, now: claim.now }) as CommandRow | undefined;
  // A command requeued by a retryable failure keeps its cancellation request: its new agent is told.
  if (row && row.cancel_requested_at !== null) candidates(sqlite).add(claim.agentId);
  return row;
}
