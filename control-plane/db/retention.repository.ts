/**
 * Retention's storage (queue/retention.ts): finished commands past the cutoff, deleted with their
 * logs in batches. SQLite runs prepared statements (see database.ts); PostgreSQL the same SQL with
 * arrays for json_each.
 */
import { sql } from 'kysely';
import { directOf, exclusive, prepared, type Db } from './database.ts';

const retentionStmts = prepared((s) => ({
  // Finished (terminal: finished_at is set exactly then) before the cutoff, oldest first, through
  // the commands_finished index; a job an instance points at (its last job) is kept.
  expired: s
    .prepare(
      `SELECT id FROM commands WHERE finished_at IS NOT NULL AND finished_at < ?
         AND NOT EXISTS (SELECT 1 FROM instances WHERE instances.last_job_id = commands.id)
       ORDER BY finished_at LIMIT ?`,
    )
    .pluck(),
  deleteLogs: s.prepare(
    `DELETE FROM command_logs WHERE id IN (SELECT id FROM command_logs WHERE command_id IN (SELECT value FROM json_each(?)) LIMIT ?)`,
  ),
  deleteUsage: s.prepare(`DELETE FROM command_log_usage WHERE command_id IN (SELECT value FROM json_each(?))`),
  deleteCommands: s.prepare(`DELETE FROM commands WHERE id IN (SELECT value FROM json_each(?)) AND finished_at IS NOT NULL`),
  checkpoint: s.prepare(`PRAGMA wal_checkpoint(PASSIVE)`),
}));

/** Up to `limit` commands that finished before `cutoff` and may be deleted. */
export async function expiredCommands(db: Db, cutoff: number, limit: number): Promise<number[]> {
  const sqlite = directOf(db);
  if (!sqlite) {
    const r = await sql<{ id: number }>`SELECT id FROM commands WHERE finished_at IS NOT NULL AND finished_at < ${cutoff}::bigint
        AND NOT EXISTS (SELECT 1 FROM instances WHERE instances.last_job_id = commands.id)
      ORDER BY finished_at LIMIT ${limit}::bigint`.execute(db); // PostgreSQL: the same query
    return r.rows.map((x) => x.id);
  }
  return exclusive(db, sqlite, () => retentionStmts(sqlite).expired.all(cutoff, limit) as number[]);
}

/** Deletes up to `limit` log lines of these commands; returns how many (0: none left). */
export async function deleteLogsOf(db: Db, ids: number[], limit: number): Promise<number> {
  const sqlite = directOf(db);
  if (!sqlite) {
    // PostgreSQL: an array for json_each.
    const r = await sql`DELETE FROM command_logs WHERE id IN (SELECT id FROM command_logs WHERE command_id = ANY(${ids}::bigint[]) LIMIT ${limit}::bigint)`.execute(db);
    return Number(r.numAffectedRows ?? 0);
  }
  return exclusive(db, sqlite, () => retentionStmts(sqlite).deleteLogs.run(JSON.stringify(ids), limit).changes);
}

/** Deletes these finished commands (their logs first: deleteLogsOf until none are left). */
export async function deleteCommands(db: Db, ids: number[]): Promise<number> {
  const sqlite = directOf(db);
  if (!sqlite) {
    return db.transaction().execute(async (trx) => {
      await trx.deleteFrom('command_log_usage').where('command_id', 'in', ids).execute();
      const r = await trx.deleteFrom('commands').where('id', 'in', ids).where('finished_at', 'is not', null).executeTakeFirst();
      return Number(r.numDeletedRows);
    });
  }
  return exclusive(db, sqlite, () =>
    sqlite.transaction(() => {
      const q = retentionStmts(sqlite);
      q.deleteUsage.run(JSON.stringify(ids));
      return q.deleteCommands.run(JSON.stringify(ids)).changes;
    })(),
  );
}

/** Copies the WAL into the database file where no reader needs it (never waits for readers). */
export async function checkpoint(db: Db): Promise<void> {
  const sqlite = directOf(db);
  if (!sqlite) return; // PostgreSQL checkpoints by itself
  await exclusive(db, sqlite, () => retentionStmts(sqlite).checkpoint.run());
}
