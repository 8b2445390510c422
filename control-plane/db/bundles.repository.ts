import { sql } from 'kysely';
import type { Selectable } from 'kysely';
import type { Db } from './database.ts';
import type { CommandState } from '../../common/wire.ts';
import type { BundleSourcesTable, InstanceVersionsTable, InstancesTable } from './bundles.table.ts';

export type BundleSourceRow = Selectable<BundleSourcesTable>;
export type InstanceRow = Selectable<InstancesTable>;
export type InstanceVersionRow = Selectable<InstanceVersionsTable>;
/** What a version pins: the bundle at a commit and the inputs given. */
export type DesiredState = Pick<InstanceRow, 'bundle_name' | 'bundle_version' | 'git_url' | 'git_path' | 'commit_sha' | 'bundle' | 'inputs'>;

/**
 * Creates or replaces a bundle source (its credentials too: none given, none kept) with what it
 * holds at the commit registration resolved (migration 0013); true when it was created.
 */
export async function upsertBundleSource(
  db: Db,
  s: {
    aid: string;
    name: string;
    url: string;
    ref: string;
    path: string;
    credentials?: { username: string; password: string };
    at: { commit: string; info: string | null; error: string | null };
    now: number;
  },
): Promise<boolean> {
  const git_username = s.credentials?.username ?? null;
  const git_password = s.credentials?.password ?? null;
  const at = { commit_sha: s.at.commit, bundle_info: s.at.info, bundle_error: s.at.error };
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('bundle_sources').select('name').where('aid', '=', s.aid).where('name', '=', s.name).executeTakeFirst();
    if (existing) {
      await trx
        .updateTable('bundle_sources')
        .set({ url: s.url, ref: s.ref, path: s.path, git_username, git_password, ...at, updated_at: s.now })
        .where('aid', '=', s.aid)
        .where('name', '=', s.name)
        .execute();
      return false;
    }
    await trx.insertInto('bundle_sources').values({ aid: s.aid, name: s.name, url: s.url, ref: s.ref, path: s.path, git_username, git_password, ...at, created_at: s.now, updated_at: s.now }).execute();
    return true;
  });
}

/** Deletes a source (its credentials with it); true when there was one. */
export async function deleteBundleSource(db: Db, aid: string, name: string): Promise<boolean> {
  const r = await db.deleteFrom('bundle_sources').where('aid', '=', aid).where('name', '=', name).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** Every (account, URL) a source names: the bundle cache keeps the mirrors of these only. */
export async function listSourceUrls(db: Db): Promise<{ aid: string; url: string }[]> {
  return db.selectFrom('bundle_sources').select(['aid', 'url']).distinct().execute();
}

export async function getBundleSource(db: Db, aid: string, name: string) {
  return db.selectFrom('bundle_sources').selectAll().where('aid', '=', aid).where('name', '=', name).executeTakeFirst();
}

export async function listBundleSources(db: Db, aid: string) {
  return db.selectFrom('bundle_sources').selectAll().where('aid', '=', aid).orderBy('name').execute();
}

/** A new instance's scheduled drift check and autoSync columns (migration 0008): the server's interval, not placed, autoSync off. */
export const DRIFT_DEFAULTS = {
  drift_interval_seconds: null,
  next_check_at: null,
  checked_job_id: null,
  auto_sync: 0,
  auto_sync_job_id: null,
  auto_sync_at: null,
  auto_sync_failures: 0,
} as const satisfies Partial<InstanceRow>;

/** Inserts a new instance and its version 1 (its first deploy), together. */
export async function insertInstance(db: Db, row: InstanceRow): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('instances').values(row).execute();
    await trx
      .insertInto('instance_versions')
      .values({ ...desiredOf(row), aid: row.aid, osid: row.osid, version: 1, action: 'deploy', rollback_of: null, job_id: row.last_job_id, created_at: row.created_at })
      .execute();
  });
}

function desiredOf(r: DesiredState): DesiredState {
  return { bundle_name: r.bundle_name, bundle_version: r.bundle_version, git_url: r.git_url, git_path: r.git_path, commit_sha: r.commit_sha, bundle: r.bundle, inputs: r.inputs };
}

export async function getInstance(db: Db, aid: string, osid: string) {
  return db.selectFrom('instances').selectAll().where('aid', '=', aid).where('osid', '=', osid).executeTakeFirst();
}

export async function osidExists(db: Db, osid: string): Promise<boolean> {
  return (await db.selectFrom('instances').select('osid').where('osid', '=', osid).executeTakeFirst()) !== undefined;
}

/** An account's instances, oldest first; a page of `limit` after the key (created_at, osid) when given. */
export async function listInstances(db: Db, aid: string, f: { cid?: string; limit?: number; after?: [createdAt: number, osid: string] } = {}) {
  let q = db.selectFrom('instances').selectAll().where('aid', '=', aid);
  if (f.cid) q = q.where('cid', '=', f.cid);
  if (f.after) q = q.where(sql<boolean>`(created_at, osid) > (${f.after[0]}, ${f.after[1]})`);
  q = q.orderBy('created_at').orderBy('osid');
  if (f.limit !== undefined) q = q.limit(f.limit);
  return q.execute();
}

/**
 * Records a new job for the instance. An apply (upgrade or rollback) also records the desired
 * state it deploys as the next version, in the same transaction; returns that version's number
 * (a delete: the current one).
 */
export async function updateInstanceJob(
  db: Db,
  aid: string,
  osid: string,
  u: { jobId: number; action: 'apply' | 'delete'; now: number; apply?: DesiredState & { action: 'upgrade' | 'rollback' | 'sync'; rollbackOf: number | null } },
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { max } = await trx
      .selectFrom('instance_versions')
      .select((eb) => eb.fn.max<number | null>('version').as('max'))
      .where('aid', '=', aid)
      .where('osid', '=', osid)
      .executeTakeFirstOrThrow();
    const current = max ?? 0;
    const desired = u.apply ? desiredOf(u.apply) : {};
    await trx
      .updateTable('instances')
      .set({ last_job_id: u.jobId, last_action: u.action, updated_at: u.now, ...desired })
      .where('aid', '=', aid)
      .where('osid', '=', osid)
      .execute();
    if (!u.apply) return current;
    await trx
      .insertInto('instance_versions')
      .values({ ...desiredOf(u.apply), aid, osid, version: current + 1, action: u.apply.action, rollback_of: u.apply.rollbackOf, job_id: u.jobId, created_at: u.now })
      .execute();
    return current + 1;
  });
}

export type InstanceVersionWithJob = InstanceVersionRow & { job_state: CommandState | null };

/**
 * The newest `limit` versions of an instance below `before` (if given), oldest first, with the
 * state of their jobs (NULL: retention deleted it, or unknown).
 */
export async function listInstanceVersions(db: Db, aid: string, osid: string, page: { limit: number; before?: number }): Promise<InstanceVersionWithJob[]> {
  let q = versionsWithJobs(db, aid, osid);
  if (page.before !== undefined) q = q.where('v.version', '<', page.before);
  return (await q.orderBy('v.version', 'desc').limit(page.limit).execute()).reverse();
}

export async function getInstanceVersion(db: Db, aid: string, osid: string, version: number): Promise<InstanceVersionWithJob | undefined> {
  return versionsWithJobs(db, aid, osid).where('v.version', '=', version).executeTakeFirst();
}

/** The instance's current version number (0: none). */
export async function currentInstanceVersion(db: Db, aid: string, osid: string): Promise<number> {
  const { max } = await db
    .selectFrom('instance_versions')
    .select((eb) => eb.fn.max<number | null>('version').as('max'))
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .executeTakeFirstOrThrow();
  return max ?? 0;
}

function versionsWithJobs(db: Db, aid: string, osid: string) {
  return db
    .selectFrom('instance_versions as v')
    .leftJoin('commands as c', (j) => j.onRef('c.id', '=', 'v.job_id').onRef('c.aid', '=', 'v.aid'))
    .selectAll('v')
    .select('c.state as job_state')
    .where('v.aid', '=', aid)
    .where('v.osid', '=', osid);
}

/** A diff job of the instance was queued: the one whose result is recorded next. */
export async function setInstanceSyncJob(db: Db, aid: string, osid: string, jobId: number): Promise<void> {
  await db.updateTable('instances').set({ sync_job_id: jobId }).where('aid', '=', aid).where('osid', '=', osid).execute();
}

/** What the diff job `jobId` found, recorded once (only while it is still the instance's last diff job). */
export async function recordInstanceSync(db: Db, aid: string, osid: string, r: { jobId: number; status: 'synced' | 'drifted' | 'error'; checkedAt: number }): Promise<void> {
  await db
    .updateTable('instances')
    .set({ sync_status: r.status, last_checked_at: r.checkedAt })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .where('sync_job_id', '=', r.jobId)
    .execute();
}

export async function storeInstanceOutputs(db: Db, aid: string, osid: string, o: { outputs: string; jobId: number }): Promise<void> {
  await db.updateTable('instances').set({ outputs: o.outputs, outputs_job_id: o.jobId }).where('aid', '=', aid).where('osid', '=', osid).execute();
}
