import type { Kysely } from 'kysely';

/**
 * The end-of-job hook (drift.repository.ts, instanceOfEndedJob) looks up, for every command that
 * ends, the instance whose last apply flow it was. Without an index on last_job_id that lookup read
 * every instance of the command's account (through instances_cluster); with it, one index probe.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('instances_last_job').on('instances').column('last_job_id').execute();
}
