import { sql, type Kysely } from 'kysely';

/**
 * The desired state of every instance, versioned: each deploy, upgrade or rollback adds a version
 * (1, 2, …) with the commit, bundle and inputs it deployed and the job that did it. Existing
 * instances get version 1: what they deploy now. job_id has no foreign key: retention may delete
 * an old version's job (the instance's last job is kept), and the version stays readable.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('instance_versions')
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('osid', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('rollback_of', 'integer')
    .addColumn('bundle_name', 'text', (c) => c.notNull())
    .addColumn('bundle_version', 'text', (c) => c.notNull())
    .addColumn('git_url', 'text', (c) => c.notNull())
    .addColumn('git_path', 'text', (c) => c.notNull())
    .addColumn('commit_sha', 'text', (c) => c.notNull())
    .addColumn('bundle', 'text', (c) => c.notNull())
    .addColumn('inputs', 'text', (c) => c.notNull())
    .addColumn('job_id', 'integer')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('instance_versions_pk', ['aid', 'osid', 'version'])
    .addForeignKeyConstraint('instance_versions_instance_fk', ['aid', 'osid'], 'instances', ['aid', 'osid'])
    .execute();
  // Version 1 of every existing instance: its current commit and inputs. Its apply job is known
  // only while that is its last job (a deleted instance's last job is the delete).
  await sql`
    INSERT INTO instance_versions
      (aid, osid, version, action, rollback_of, bundle_name, bundle_version, git_url, git_path, commit_sha, bundle, inputs, job_id, created_at)
    SELECT aid, osid, 1, 'deploy', NULL, bundle_name, bundle_version, git_url, git_path, commit_sha, bundle, inputs,
           CASE WHEN last_action = 'apply' THEN last_job_id ELSE NULL END,
           CASE WHEN last_action = 'apply' THEN updated_at ELSE created_at END
      FROM instances`.execute(db);
}
