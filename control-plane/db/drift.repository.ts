/**
 * Scheduled drift checks and autoSync (migration 0008): the scheduler's due scan, recording an
 * ended check exactly once, autoSync's bookkeeping, per-instance settings and the metrics' count.
 */
import { directOf, exclusive, prepared, type Db } from './database.ts';
import { TERMINAL_STATES, type CommandState } from '../../common/wire.ts';

export interface DriftCandidateRow {
  aid: string;
  osid: string;
  cid: string;
  last_action: 'apply' | 'delete';
  drift_interval_seconds: number | null;
  next_check_at: number | null;
  /** NULL: the job is gone (retention), i.e. ended. */
  last_job_state: CommandState | null;
  sync_job_state: CommandState | null;
  sync_job_id: number | null;
}

/**
 * Instances the scheduler has something to do with now: not deleted (their last action is not a
 * delete), checks not off, and due or not placed yet; the most overdue first (unplaced first),
 * at most `limit`. Uses the next_check_at index; the two job states come by primary key.
 */
export async function dueInstances(db: Db, now: number, defaultIntervalSeconds: number, limit: number): Promise<DriftCandidateRow[]> {
  return db
    .selectFrom('instances as i')
    .leftJoin('commands as lj', 'lj.id', 'i.last_job_id')
    .leftJoin('commands as sj', 'sj.id', 'i.sync_job_id')
    .select(['i.aid', 'i.osid', 'i.cid', 'i.last_action', 'i.drift_interval_seconds', 'i.next_check_at', 'i.sync_job_id', 'lj.state as last_job_state', 'sj.state as sync_job_state'])
    .where('i.last_action', '=', 'apply')
    .where((eb) => eb.or([eb('i.next_check_at', 'is', null), eb('i.next_check_at', '<=', now)]))
    .where((eb) => eb(eb.fn.coalesce('i.drift_interval_seconds', eb.val(defaultIntervalSeconds)), '>', 0))
    .orderBy((eb) => eb.fn.coalesce('i.next_check_at', eb.val(0)))
    .orderBy('i.osid')
    .limit(limit)
    .execute() as Promise<DriftCandidateRow[]>;
}

/** Off or deleted instances that still hold a due time (cleared so the due scan never meets them). */
export async function clearStaleNextChecks(db: Db, defaultIntervalSeconds: number): Promise<void> {
  await db
    .updateTable('instances')
    .set({ next_check_at: null })
    .where('next_check_at', 'is not', null)
    .where((eb) => eb.or([eb('last_action', '=', 'delete'), eb(eb.fn.coalesce('drift_interval_seconds', eb.val(defaultIntervalSeconds)), '<=', 0)]))
    .execute();
}

export async function setNextChecks(db: Db, updates: readonly { aid: string; osid: string; nextCheckAt: number | null }[]): Promise<void> {
  if (updates.length === 0) return;
  await db.transaction().execute(async (trx) => {
    for (const u of updates) await trx.updateTable('instances').set({ next_check_at: u.nextCheckAt }).where('aid', '=', u.aid).where('osid', '=', u.osid).execute();
  });
}

/**
 * Takes a due check for this replica: moves the instance's due time from the one the due scan read
 * (`dueAt`, NULL for one not placed yet) to `nextCheckAt`, only if it is still that. Several
 * replicas tick at once on PostgreSQL; the one whose update changed the row submits the check, the
 * others see 0 rows and leave it (an UPDATE of one row is atomic on either dialect: a concurrent
 * one waits for the row and then re-checks the WHERE against the committed value).
 */
export async function takeDueCheck(db: Db, aid: string, osid: string, dueAt: number | null, nextCheckAt: number): Promise<boolean> {
  const res = await db
    .updateTable('instances')
    .set({ next_check_at: nextCheckAt })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .where((eb) => (dueAt === null ? eb('next_check_at', 'is', null) : eb('next_check_at', '=', dueAt)))
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

/**
 * Records what the diff job `jobId` found, once: only while it is still the instance's last diff
 * job and not recorded yet. True for the one caller that recorded it (the end-of-job hook, the
 * sweep or a read of the instance, whichever came first): that caller counts it and acts on it.
 */
export async function recordCheckOnce(db: Db, aid: string, osid: string, r: { jobId: number; status: 'synced' | 'drifted' | 'error'; checkedAt: number }): Promise<boolean> {
  const res = await db
    .updateTable('instances')
    .set({ sync_status: r.status, last_checked_at: r.checkedAt, checked_job_id: r.jobId })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .where('sync_job_id', '=', r.jobId)
    .where((eb) => eb.or([eb('checked_job_id', 'is', null), eb('checked_job_id', '!=', r.jobId)]))
    .executeTakeFirst();
  return Number(res.numUpdatedRows) === 1;
}

const stmts = prepared((s) => ({
  instanceOfCheck: s.prepare(`SELECT osid FROM instances WHERE aid = ? AND sync_job_id = ?`),
  instanceOfApply: s.prepare(`SELECT osid FROM instances WHERE aid = ? AND last_job_id = ? AND last_action = 'apply'`),
}));

/**
 * The instance whose last diff job is `jobId` (the end-of-job hook's lookup), if any. Run for every
 * command that ends: on SQLite a prepared statement (database.ts), not a Kysely query (built,
 * compiled and run through promise hops, it was ~2 % of the control plane's thread per command).
 */
export async function instanceOfCheck(db: Db, aid: string, jobId: number): Promise<{ osid: string } | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return db.selectFrom('instances').select('osid').where('aid', '=', aid).where('sync_job_id', '=', jobId).executeTakeFirst();
  return exclusive(db, sqlite, () => stmts(sqlite).instanceOfCheck.get(aid, jobId) as { osid: string } | undefined);
}

/**
 * The instance whose last job is the apply flow `jobId` (the end-of-job hook's lookup), if any. Run
 * for every command that ends, like instanceOfCheck: prepared on SQLite (as a Kysely query it was
 * ~8 KB of allocation per command, 6 % of the control plane's, issue 18's heap profile).
 */
export async function instanceOfApply(db: Db, aid: string, jobId: number): Promise<{ osid: string } | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return db.selectFrom('instances').select('osid').where('aid', '=', aid).where('last_job_id', '=', jobId).where('last_action', '=', 'apply').executeTakeFirst();
  return exclusive(db, sqlite, () => stmts(sqlite).instanceOfApply.get(aid, jobId) as { osid: string } | undefined);
}

/**
 * An apply flow that pruned ended (only while it is still the instance's last job): `synced` when
 * it succeeded (checked at its end), unknown (NULL) when it did not (what it removed is not known).
 */
export async function recordPruningApply(db: Db, aid: string, osid: string, r: { jobId: number; succeeded: boolean; at: number }): Promise<void> {
  await db
    .updateTable('instances')
    .set(r.succeeded ? { sync_status: 'synced', last_checked_at: r.at } : { sync_status: null })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .where('last_job_id', '=', r.jobId)
    .where('last_action', '=', 'apply')
    .execute();
}

/** Instances whose last diff job ended without its result recorded (the sweep's safety net), at most `limit`. */
export async function endedUnrecordedChecks(db: Db, limit: number): Promise<{ aid: string; osid: string; sync_job_id: number }[]> {
  return db
    .selectFrom('instances as i')
    .innerJoin('commands as c', 'c.id', 'i.sync_job_id')
    .select(['i.aid', 'i.osid', 'c.id as sync_job_id'])
    .where('c.state', 'in', TERMINAL_STATES)
    .where((eb) => eb.or([eb('i.checked_job_id', 'is', null), eb('i.checked_job_id', '!=', eb.ref('i.sync_job_id'))]))
    .limit(limit)
    .execute();
}

export interface AutoSyncRow {
  auto_sync: number;
  auto_sync_job_id: number | null;
  auto_sync_at: number | null;
  auto_sync_failures: number;
}

export async function getAutoSync(db: Db, aid: string, osid: string): Promise<AutoSyncRow | undefined> {
  return db.selectFrom('instances').select(['auto_sync', 'auto_sync_job_id', 'auto_sync_at', 'auto_sync_failures']).where('aid', '=', aid).where('osid', '=', osid).executeTakeFirst();
}

/** AutoSync submitted `jobId` at `at`, the `failures`-th in a row that did not stick before it. */
export async function recordAutoSync(db: Db, aid: string, osid: string, a: { jobId: number; at: number; failures: number }): Promise<void> {
  await db.updateTable('instances').set({ auto_sync_job_id: a.jobId, auto_sync_at: a.at, auto_sync_failures: a.failures }).where('aid', '=', aid).where('osid', '=', osid).execute();
}

/** A check found the instance synced: autoSync's failures are forgotten. */
export async function resetAutoSync(db: Db, aid: string, osid: string): Promise<void> {
  await db.updateTable('instances').set({ auto_sync_job_id: null, auto_sync_failures: 0 }).where('aid', '=', aid).where('osid', '=', osid).execute();
}

/**
 * Per-instance settings. A new interval (or off) places the next check again (next_check_at
 * NULL: the scheduler puts it within the new interval).
 */
export async function updateDriftSettings(db: Db, aid: string, osid: string, s: { intervalSeconds?: number; autoSync?: boolean }): Promise<void> {
  await db
    .updateTable('instances')
    .set({
      ...(s.intervalSeconds !== undefined ? { drift_interval_seconds: s.intervalSeconds, next_check_at: null } : {}),
      ...(s.autoSync !== undefined ? { auto_sync: s.autoSync ? 1 : 0, auto_sync_job_id: null, auto_sync_failures: 0 } : {}),
    })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .execute();
}

/** Instances not deleted, by sync status (NULL: unknown), across accounts (the metrics are platform-wide). */
export async function countInstancesBySyncStatus(db: Db): Promise<{ status: string; n: number }[]> {
  return db
    .selectFrom('instances')
    .select([(eb) => eb.fn.coalesce('sync_status', eb.val('unknown')).as('status'), (eb) => eb.fn.countAll<number>().as('n')])
    .where('last_action', '=', 'apply')
    .groupBy('status')
    .execute() as Promise<{ status: string; n: number }[]>;
}
