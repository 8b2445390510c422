import type { Kysely } from 'kysely';

/**
 * Drift of an instance: the last diff job (`tether diff`, POST /v1/instances/{osid}/diff), and,
 * once it ended, what it found: sync_status `synced | drifted | error` (NULL: never checked,
 * shown as `unknown`) at last_checked_at. sync_job_id has no foreign key (retention may delete
 * the job; the recorded status stays).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('instances').addColumn('sync_job_id', 'integer').execute();
  await db.schema.alterTable('instances').addColumn('sync_status', 'text').execute();
  await db.schema.alterTable('instances').addColumn('last_checked_at', 'integer').execute();
}
