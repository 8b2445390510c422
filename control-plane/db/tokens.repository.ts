import { directOf, exclusive, prepared, type Db } from './database.ts';
import type { BootstrapTokensTable, ApiTokensTable } from './tokens.table.ts';

export async function insertBootstrapToken(db: Db, t: BootstrapTokensTable) {
  await db.insertInto('bootstrap_tokens').values(t).execute();
}

export async function getBootstrapToken(db: Db, id: string) {
  return db.selectFrom('bootstrap_tokens').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Spends a token. The `used_at IS NULL` condition makes this the single point where a token can
 * be used: of two concurrent exchanges, exactly one updates a row.
 */
export async function spendBootstrapToken(db: Db, id: string, agentId: string, now: number): Promise<boolean> {
  const r = await db
    .updateTable('bootstrap_tokens')
    .set({ used_at: now, used_by_agent: agentId })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

export async function insertApiToken(db: Db, t: ApiTokensTable) {
  await db.insertInto('api_tokens').values(t).execute();
}

const stmts = prepared((s) => ({ apiToken: s.prepare(`SELECT * FROM api_tokens WHERE key_id = ?`) }));

/** Read on every admin request: a prepared statement, not a Kysely query (see database.ts). */
export async function getApiToken(db: Db, keyId: string): Promise<ApiTokensTable | undefined> {
  const sqlite = directOf(db);
  if (!sqlite) return db.selectFrom('api_tokens').selectAll().where('key_id', '=', keyId).executeTakeFirst(); // PostgreSQL
  return exclusive(db, sqlite, () => stmts(sqlite).apiToken.get(keyId) as ApiTokensTable | undefined);
}

export async function revokeApiToken(db: Db, aid: string, keyId: string, now: number): Promise<boolean> {
  const r = await db
    .updateTable('api_tokens')
    .set({ revoked_at: now })
    .where('aid', '=', aid)
    .where('key_id', '=', keyId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}
