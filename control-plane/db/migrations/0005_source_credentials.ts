import type { Kysely } from 'kysely';

/**
 * Per-source git credentials (https user and password or token), used only to fetch that source;
 * never logged, never returned by the API. NULL: the source is fetched without credentials.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('bundle_sources').addColumn('git_username', 'text').execute();
  await db.schema.alterTable('bundle_sources').addColumn('git_password', 'text').execute();
}
