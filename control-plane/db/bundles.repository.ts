import type { Selectable } from 'kysely';
import type { Db } from './database.ts';
import type { BundleSourcesTable, InstancesTable } from './bundles.table.ts';

export type BundleSourceRow = Selectable<BundleSourcesTable>;
export type InstanceRow = Selectable<InstancesTable>;

/**
 * Creates or replaces a bundle source (its credentials too: none given, none kept); true when it
 * was created.
 */
export async function upsertBundleSource(
  db: Db,
  s: { aid: string; name: string; url: string; ref: string; path: string; credentials?: { username: string; password: string }; now: number },
): Promise<boolean> {
  const git_username = s.credentials?.username ?? null;
  const git_password = s.credentials?.password ?? null;
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('bundle_sources').select('name').where('aid', '=', s.aid).where('name', '=', s.name).executeTakeFirst();
    if (existing) {
      await trx
        .updateTable('bundle_sources')
        .set({ url: s.url, ref: s.ref, path: s.path, git_username, git_password, updated_at: s.now })
        .where('aid', '=', s.aid)
        .where('name', '=', s.name)
        .execute();
      return false;
    }
    await trx.insertInto('bundle_sources').values({ aid: s.aid, name: s.name, url: s.url, ref: s.ref, path: s.path, git_username, git_password, created_at: s.now, updated_at: s.now }).execute();
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

export async function insertInstance(db: Db, row: InstanceRow): Promise<void> {
  await db.insertInto('instances').values(row).execute();
}

export async function getInstance(db: Db, aid: string, osid: string) {
  return db.selectFrom('instances').selectAll().where('aid', '=', aid).where('osid', '=', osid).executeTakeFirst();
}

export async function osidExists(db: Db, osid: string): Promise<boolean> {
  return (await db.selectFrom('instances').select('osid').where('osid', '=', osid).executeTakeFirst()) !== undefined;
}

export async function listInstances(db: Db, aid: string, f: { cid?: string } = {}) {
  let q = db.selectFrom('instances').selectAll().where('aid', '=', aid);
  if (f.cid) q = q.where('cid', '=', f.cid);
  return q.orderBy('created_at').orderBy('osid').execute();
}

/** Records a new job for the instance (apply: with the commit, bundle and inputs it deploys). */
export async function updateInstanceJob(
  db: Db,
  aid: string,
  osid: string,
  u: { jobId: number; action: 'apply' | 'delete'; now: number; apply?: Pick<InstanceRow, 'bundle_name' | 'bundle_version' | 'git_url' | 'git_path' | 'commit_sha' | 'bundle' | 'inputs'> },
): Promise<void> {
  await db
    .updateTable('instances')
    .set({ last_job_id: u.jobId, last_action: u.action, updated_at: u.now, ...(u.apply ?? {}) })
    .where('aid', '=', aid)
    .where('osid', '=', osid)
    .execute();
}

export async function storeInstanceOutputs(db: Db, aid: string, osid: string, o: { outputs: string; jobId: number }): Promise<void> {
  await db.updateTable('instances').set({ outputs: o.outputs, outputs_job_id: o.jobId }).where('aid', '=', aid).where('osid', '=', osid).execute();
}
