import type { Kysely } from 'kysely';

/**
 * What a bundle source holds at its registered commit, for the console's deploy form before any
 * deployment (GET /v1/bundles): the commit registration resolved, the bundle's name, version,
 * description and typed inputs there (JSON), or why the bundle there did not validate. NULL for
 * sources registered before this migration (until registered again).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('bundle_sources').addColumn('commit_sha', 'text').execute();
  await db.schema.alterTable('bundle_sources').addColumn('bundle_info', 'text').execute();
  await db.schema.alterTable('bundle_sources').addColumn('bundle_error', 'text').execute();
}
