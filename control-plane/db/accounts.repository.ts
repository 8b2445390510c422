import { directOf, exclusive, prepared, type Db } from './database.ts';
import type { ClustersTable } from './accounts.table.ts';

const stmts = prepared((s) => ({ cluster: s.prepare(`SELECT * FROM clusters WHERE aid = ? AND cid = ?`) }));

export async function insertAccount(db: Db, a: { aid: string; name: string; now: number }) {
  await db.insertInto('accounts').values({ aid: a.aid, name: a.name, created_at: a.now }).execute();
}

export async function getAccount(db: Db, aid: string) {
  return db.selectFrom('accounts').selectAll().where('aid', '=', aid).executeTakeFirst();
}

export async function countAccounts(db: Db): Promise<number> {
  const r = await db.selectFrom('accounts').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function insertCluster(db: Db, c: { aid: string; cid: string; domain: string; now: number }) {
  await db.insertInto('clusters').values({ aid: c.aid, cid: c.cid, domain: c.domain, created_at: c.now }).execute();
}

/** Read on every submission: a prepared statement, not a Kysely query (see database.ts). */
export async function getCluster(db: Db, aid: string, cid: string): Promise<ClustersTable | undefined> {
  const sqlite = directOf(db);
  // PostgreSQL: the same read through Kysely (its pool prepares nothing; one round trip either way).
  if (!sqlite) return db.selectFrom('clusters').selectAll().where('aid', '=', aid).where('cid', '=', cid).executeTakeFirst();
  return exclusive(db, sqlite, () => stmts(sqlite).cluster.get(aid, cid) as ClustersTable | undefined);
}

export async function listClusters(db: Db, aid: string) {
  return db.selectFrom('clusters').selectAll().where('aid', '=', aid).orderBy('cid').execute();
}
