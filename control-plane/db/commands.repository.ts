import { sql } from 'kysely';
import type { CommandState } from '../../common/wire.ts';
import type { Db } from './database.ts';
import type { CommandsTable } from './commands.table.ts';
import type { Selectable } from 'kysely';

export type CommandRow = Selectable<CommandsTable>;

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

/**
 * Inserts a command, or returns the existing one with the same idempotency key (same account).
 * Runs in one transaction so two submissions with one key make one command.
 */
export async function insertCommand(db: Db, c: NewCommand): Promise<{ row: CommandRow; created: boolean }> {
  return db.transaction().execute(async (trx) => {
    if (c.idempotencyKey !== null) {
      const existing = await trx.selectFrom('commands').selectAll().where('aid', '=', c.aid).where('idempotency_key', '=', c.idempotencyKey).executeTakeFirst();
      if (existing) return { row: existing, created: false };
    }
    const row = await trx
      .insertInto('commands')
      .values({
        aid: c.aid,
        cid: c.cid,
        nid: c.nid,
        type: c.type,
        spec: c.spec,
        state: 'queued',
        idempotency_key: c.idempotencyKey,
        timeout_seconds: c.timeoutSeconds,
        max_attempts: c.maxAttempts,
        attempts: 0,
        created_at: c.now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { row, created: true };
  });
}

export async function getCommand(db: Db, aid: string, id: number) {
  return db.selectFrom('commands').selectAll().where('aid', '=', aid).where('id', '=', id).executeTakeFirst();
}

export async function getCommandById(db: Db, id: number) {
  return db.selectFrom('commands').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listCommands(db: Db, aid: string, f: { cid?: string; state?: CommandState; limit: number; beforeId?: number }) {
  let q = db.selectFrom('commands').selectAll().where('aid', '=', aid);
  if (f.cid) q = q.where('cid', '=', f.cid);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.beforeId) q = q.where('id', '<', f.beforeId);
  return q.orderBy('id', 'desc').limit(f.limit).execute();
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
    return trx.selectFrom('commands').selectAll().where('aid', '=', aid).where('id', '=', id).executeTakeFirst();
  });
}

export type Completion =
  | { kind: 'final'; state: 'succeeded' | 'failed' | 'cancelled' | 'timed_out'; outputs: string | null; error: string | null }
  | { kind: 'retry'; error: string };

/**
 * Applies an agent's report for the attempt identified by (agent, lease). Fenced: it changes the
 * row only while that attempt is the current one and still running, so a duplicate or a report
 * from an expired attempt updates nothing. Returns the updated row, or undefined if fenced off.
 */
export async function completeAttempt(db: Db, f: { id: number; agentId: string; leaseId: string; now: number }, c: Completion) {
  const base = db
    .updateTable('commands')
    .where('id', '=', f.id)
    .where('claimed_by', '=', f.agentId)
    .where('lease_id', '=', f.leaseId)
    .where('state', '=', 'running');
  if (c.kind === 'retry') {
    // A retryable failure goes back to the queue if attempts remain; otherwise it is final.
    return base
      .set((eb) => ({
        state: eb.case().when('attempts', '<', eb.ref('max_attempts')).then(sql<CommandState>`'queued'`).else(sql<CommandState>`'failed'`).end(),
        error: c.error,
        lease_id: eb.case().when('attempts', '<', eb.ref('max_attempts')).then(sql<string | null>`NULL`).else(eb.ref('lease_id')).end(),
        lease_expires_at: null,
        claimed_by: eb.case().when('attempts', '<', eb.ref('max_attempts')).then(sql<string | null>`NULL`).else(eb.ref('claimed_by')).end(),
        finished_at: eb.case().when('attempts', '<', eb.ref('max_attempts')).then(sql<number | null>`NULL`).else(f.now).end(),
      }))
      .returningAll()
      .executeTakeFirst();
  }
  return base
    .set({ state: c.state, outputs: c.outputs, error: c.error, finished_at: f.now, lease_expires_at: null })
    .returningAll()
    .executeTakeFirst();
}

/**
 * Heartbeat: extends the leases of the commands this agent holds, capped at the command's
 * deadline (claim + timeout + grace) so a hung but heartbeating agent cannot keep one forever.
 */
export async function extendLeases(db: Db, agentId: string, ids: number[], until: number, graceMs: number) {
  if (ids.length === 0) return;
  await db
    .updateTable('commands')
    .set((eb) => ({
      lease_expires_at: eb.fn('min', [sql<number>`${until}`, sql<number>`claimed_at + timeout_seconds * 1000 + ${graceMs}`]),
    }))
    .where('claimed_by', '=', agentId)
    .where('state', '=', 'running')
    .where('id', 'in', ids)
    .execute();
}

/** Running commands of this agent whose cancellation was requested. */
export async function cancelRequestedFor(db: Db, agentId: string): Promise<number[]> {
  const rows = await db
    .selectFrom('commands')
    .select('id')
    .where('claimed_by', '=', agentId)
    .where('state', '=', 'running')
    .where('cancel_requested_at', 'is not', null)
    .execute();
  return rows.map((r) => r.id);
}

/**
 * Ends every attempt whose lease has expired: past its deadline it is timed out, when cancelled
 * it is cancelled, with attempts left it is queued again (lease cleared: the old attempt is
 * fenced off), otherwise it fails.
 */
export async function expireLeases(db: Db, now: number) {
  const error = (code: string, message: string) => JSON.stringify({ code, message, retryable: false });
  return db
    .updateTable('commands')
    .set((eb) => {
      const deadlinePassed = sql<boolean>`claimed_at + timeout_seconds * 1000 <= ${now}`;
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
        finished_at: sql<number | null>`CASE WHEN ${requeue} THEN NULL ELSE ${now} END`,
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
  await db
    .updateTable('commands')
    .set((eb) => ({ state: 'queued', attempts: eb('attempts', '-', 1), lease_id: null, lease_expires_at: null, claimed_by: null, claimed_at: null }))
    .where('id', '=', id)
    .where('lease_id', '=', leaseId)
    .where('state', '=', 'running')
    .execute();
}
