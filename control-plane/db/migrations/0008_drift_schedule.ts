import { sql, type Kysely } from 'kysely';

/**
 * Scheduled drift checks and autoSync (issue 13, part B; control-plane/bundles/drift.*):
 * - drift_interval_seconds: the instance's own check interval; NULL: the server's
 *   (`--drift-interval`), 0: off.
 * - next_check_at: when its next scheduled check is due; NULL: not placed yet (the scheduler
 *   places it at random within one interval, so instances created together do not fire together).
 * - checked_job_id: the diff job whose result sync_status holds, recorded once (so that a result
 *   is counted, and acted on by autoSync, exactly once); results recorded before count as such.
 * - auto_sync (0/1, off by default); auto_sync_job_id, auto_sync_at: the last sync autoSync
 *   submitted and when; auto_sync_failures: autoSyncs in a row after which a check still found
 *   drift (the backoff; reset by a synced check).
 * Indexes on next_check_at (the scheduler's due scan) and sync_job_id (finding the instance of a
 * job that just ended) keep both cheap with many instances.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('instances').addColumn('drift_interval_seconds', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('next_check_at', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('checked_job_id', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('auto_sync', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('instances').addColumn('auto_sync_job_id', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('auto_sync_at', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('auto_sync_failures', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  // Results recorded before this migration count as recorded (not counted or acted on again).
  await sql`UPDATE instances SET checked_job_id = sync_job_id WHERE sync_status IS NOT NULL`.execute(db);
  await db.schema.createIndex('instances_next_check').on('instances').column('next_check_at').execute();
  await db.schema.createIndex('instances_sync_job').on('instances').column('sync_job_id').execute();
}
