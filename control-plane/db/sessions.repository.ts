import { sql } from 'kysely';
import { directOf, exclusive, isPostgres, prepared, type Db } from './database.ts';
import type { SessionsTable } from './sessions.table.ts';

const stmts = prepared((s) => ({
  get: s.prepare(`SELECT * FROM sessions WHERE id_hash = ?`),
  touch: s.prepare(`UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?`),
}));

/**
 * Inserts a session and keeps at most `max` per account: the oldest beyond it are deleted in the
 * same transaction (the newest kept: by creation time, then insertion order). Returns how many were evicted.
 */
export async function insertSession(db: Db, s: SessionsTable, max: number): Promise<number> {
  // Among sessions made in the same millisecond, SQLite keeps the later inserted (rowid);
  // PostgreSQL has no insertion order, so there the new one is kept and the others by their hash.
  const tiebreak = isPostgres(db) ? sql`id_hash` : sql`rowid`;
  return db.transaction().execute(async (tx) => {
    await tx.insertInto('sessions').values(s).execute();
    const keep = tx.selectFrom('sessions').select('id_hash').where('aid', '=', s.aid).where('id_hash', '!=', s.id_hash).orderBy('created_at', 'desc').orderBy(tiebreak, 'desc').limit(max - 1);
    const r = await tx.deleteFrom('sessions').where('aid', '=', s.aid).where('id_hash', '!=', s.id_hash).where('id_hash', 'not in', keep).executeTakeFirst();
    return Number(r.numDeletedRows);
  });
}

/** Read on every request made with the cookie: a prepared statement (see database.ts). */
export async function getSession(db: Db, idHash: string): Promise<SessionsTable | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return db.selectFrom('sessions').selectAll().where('id_hash', '=', idHash).executeTakeFirst();
  return exclusive(db, sqlite, () => stmts(sqlite).get.get(idHash) as SessionsTable | undefined);
}

export async function touchSession(db: Db, idHash: string, now: number): Promise<void> {
  const sqlite = directOf(db);
  if (!sqlite) {
    await db.updateTable('sessions').set({ last_seen_at: now }).where('id_hash', '=', idHash).execute();
    return;
  }
  await exclusive(db, sqlite, () => stmts(sqlite).touch.run(now, idHash));
}

export async function deleteSession(db: Db, idHash: string): Promise<boolean> {
  const r = await db.deleteFrom('sessions').where('id_hash', '=', idHash).executeTakeFirst();
  return Number(r.numDeletedRows) === 1;
}

/** Ends every session made from an API token (the token was revoked). */
export async function deleteSessionsOfToken(db: Db, keyId: string): Promise<number> {
  const r = await db.deleteFrom('sessions').where('key_id', '=', keyId).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/** Deletes sessions past their absolute expiry or idle since before `idleBefore`. */
export async function deleteExpiredSessions(db: Db, now: number, idleBefore: number): Promise<number> {
  const r = await db
    .deleteFrom('sessions')
    .where((eb) => eb.or([eb('expires_at', '<=', now), eb('last_seen_at', '<=', idleBefore)]))
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function countSessions(db: Db, aid: string): Promise<number> {
  const r = await db.selectFrom('sessions').select((eb) => eb.fn.countAll<number>().as('n')).where('aid', '=', aid).executeTakeFirstOrThrow();
  return Number(r.n);
}
