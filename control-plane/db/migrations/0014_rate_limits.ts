import type { Kysely } from 'kysely';

/**
 * Rate-limit counters shared by the replicas of a control plane on PostgreSQL (limits.repository.ts):
 * per key (`bootstrap:<address>`, `login:<address>`, `log:<agent id>`, `renew:<agent id>`) a window
 * that opened at `window_start` (epoch ms, the database's clock) and what was counted in it
 * (failures, bytes, a renewal in progress). Created on both dialects; only used on PostgreSQL
 * (on SQLite one process keeps these counters in memory, as before).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rate_limits')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('window_start', 'integer', (c) => c.notNull())
    .addColumn('count', 'integer', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('rate_limits_window').on('rate_limits').column('window_start').execute();
}
