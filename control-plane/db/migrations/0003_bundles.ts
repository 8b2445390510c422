import type { Kysely } from 'kysely';

/** Bundle sources (git URL + ref, per account) and the instances deployed from them. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('bundle_sources')
    .addColumn('aid', 'text', (c) => c.notNull().references('accounts.aid'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('ref', 'text', (c) => c.notNull())
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('bundle_sources_pk', ['aid', 'name'])
    .execute();

  await db.schema
    .createTable('instances')
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('osid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('source', 'text', (c) => c.notNull())
    .addColumn('bundle_name', 'text', (c) => c.notNull())
    .addColumn('bundle_version', 'text', (c) => c.notNull())
    .addColumn('git_url', 'text', (c) => c.notNull())
    .addColumn('git_path', 'text', (c) => c.notNull())
    .addColumn('commit_sha', 'text', (c) => c.notNull())
    .addColumn('bundle', 'text', (c) => c.notNull())
    .addColumn('inputs', 'text', (c) => c.notNull())
    .addColumn('last_job_id', 'integer', (c) => c.notNull().references('commands.id'))
    .addColumn('last_action', 'text', (c) => c.notNull())
    .addColumn('outputs', 'text')
    .addColumn('outputs_job_id', 'integer')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('instances_pk', ['aid', 'osid'])
    .addForeignKeyConstraint('instances_cluster_fk', ['aid', 'cid'], 'clusters', ['aid', 'cid'])
    .execute();
  await db.schema.createIndex('instances_cluster').on('instances').columns(['aid', 'cid']).execute();
}
