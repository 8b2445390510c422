/**
 * Rate-limit counters shared by replicas on PostgreSQL (migration 0014; http/rate-limit.ts uses
 * them). A key's window opens at its first count and lasts `windowMs`; a count after it opens a
 * new one. `now` is the caller's Clock, which on PostgreSQL follows the database's (db/clock.ts), so
 * replicas whose own clocks differ still share one window. PostgreSQL only: on SQLite one process
 * counts in memory.
 *
 * Safety: each change is one INSERT … ON CONFLICT DO UPDATE, which PostgreSQL runs atomically
 * against a concurrent one on the same key (the second waits for the first's row lock and sees its
 * result), so two replicas counting at once add up and never both take the last unit.
 */
import { sql } from 'kysely';
import type { Db } from './database.ts';

export interface Counted {
  /** What the key's window holds after this call (unchanged when refused). */
  count: number;
  /** Milliseconds until the window closes. */
  retryAfterMs: number;
  /** False: adding would have passed the limit, nothing was added. */
  added: boolean;
}

/**
 * Adds `amount` to the key's window, but only while it stays within `limit` (no limit: always).
 * One statement; a refused add leaves the row as it was (the upsert's WHERE is false: no row is
 * returned), and only then a second statement reads the window for the answer.
 */
export async function addToWindow(db: Db, key: string, amount: number, windowMs: number, now: number, limit?: number): Promise<Counted> {
  const NOW = sql`${now}::bigint`;
  const cap = limit ?? Number.MAX_SAFE_INTEGER;
  const r = await sql<{ count: number; retry_ms: number }>`
    INSERT INTO rate_limits AS r (key, window_start, count) VALUES (${key}, ${NOW}, ${amount}::bigint)
    ON CONFLICT (key) DO UPDATE SET
      count = CASE WHEN r.window_start > ${NOW} - ${windowMs}::bigint THEN r.count + ${amount}::bigint ELSE ${amount}::bigint END,
      window_start = CASE WHEN r.window_start > ${NOW} - ${windowMs}::bigint THEN r.window_start ELSE ${NOW} END
    WHERE r.window_start <= ${NOW} - ${windowMs}::bigint OR r.count + ${amount}::bigint <= ${cap}::bigint
    RETURNING r.count, (r.window_start + ${windowMs}::bigint - ${NOW}) AS retry_ms`.execute(db);
  const row = r.rows[0];
  if (row) return { count: Number(row.count), retryAfterMs: Math.max(0, Number(row.retry_ms)), added: true };
  return { ...(await windowOf(db, key, windowMs, now)), added: false };
}

/** What the key's open window holds (0 when none is open), without writing. */
export async function windowOf(db: Db, key: string, windowMs: number, now: number): Promise<{ count: number; retryAfterMs: number }> {
  const NOW = sql`${now}::bigint`;
  const r = await sql<{ count: number; retry_ms: number }>`
    SELECT count, (window_start + ${windowMs}::bigint - ${NOW}) AS retry_ms FROM rate_limits
    WHERE key = ${key} AND window_start > ${NOW} - ${windowMs}::bigint`.execute(db);
  const row = r.rows[0];
  return row ? { count: Number(row.count), retryAfterMs: Math.max(0, Number(row.retry_ms)) } : { count: 0, retryAfterMs: 0 };
}

/** Forgets the key (a renewal that ended gives its slot back). */
export async function clearWindow(db: Db, key: string): Promise<void> {
  await db.deleteFrom('rate_limits').where('key', '=', key).execute();
}

/** Deletes windows opened before `before` (the retention sweep: long closed); returns how many. */
export async function sweepWindows(db: Db, before: number, limit = 10_000): Promise<number> {
  const r = await sql`DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE window_start < ${before}::bigint LIMIT ${limit}::bigint)`.execute(db);
  return Number(r.numAffectedRows ?? 0);
}
