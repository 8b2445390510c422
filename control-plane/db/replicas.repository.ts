/**
 * What replicas ask of the shared database beside the queue: whether it answers (/readyz), and
 * the secrets every replica serves alike (shared_secrets, migration 0011).
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';

/** A trivial round trip: the database answers. */
export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}

export interface SharedSecret {
  value: string;
  version: number;
  updatedAt: number;
}

export async function getSharedSecret(db: Db, name: string): Promise<SharedSecret | undefined> {
  const row = await db.selectFrom('shared_secrets').select(['value', 'version', 'updated_at']).where('name', '=', name).executeTakeFirst();
  return row ? { value: row.value, version: Number(row.version), updatedAt: Number(row.updated_at) } : undefined;
}

/**
 * Stores `value` under `name` unless a value is there already; returns the stored one (replicas
 * starting together: the first insert wins, the others read it). Same SQL on both dialects.
 */
export async function putSharedSecretIfAbsent(db: Db, name: string, value: string, now: number): Promise<SharedSecret> {
  await db.insertInto('shared_secrets').values({ name, value, version: 1, updated_at: now }).onConflict((oc) => oc.column('name').doNothing()).execute();
  const stored = await getSharedSecret(db, name);
  if (!stored) throw new Error(`shared secret ${name} vanished after its insert`);
  return stored;
}

/** Replaces `name` only if it is still at `version` (one replica of several rotating at once wins); returns whether it did. */
export async function replaceSharedSecret(db: Db, name: string, version: number, value: string, now: number): Promise<boolean> {
  const r = await db
    .updateTable('shared_secrets')
    .set({ value, version: version + 1, updated_at: now })
    .where('name', '=', name)
    .where('version', '=', version)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/**
 * The targets (`aid`, `cid`, `nid`) with queued commands, at most `limit` (the replicas' sweep: one
 * query a few seconds per replica, over the partial index commands_queued).
 */
export async function queuedTargets(db: Db, limit = 10_000): Promise<{ aid: string; cid: string; nid: string | null }[]> {
  return db.selectFrom('commands').select(['aid', 'cid', 'nid']).distinct().where('state', '=', 'queued').limit(limit).execute();
}
