import { sql, type Kysely } from 'kysely';

/**
 * The web console (issue 14). Browser sessions of the web console (issue 14): made from an API token (POST /v1/sessions),
 * carried by the `tether_session` cookie. Only the SHA-256 of the cookie's 256-bit secret is
 * stored (id_hash). A session ends at expires_at (absolute), after idle expiry without use
 * (last_seen_at), on sign-out, or when the API token it was made from (key_id) is revoked.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('aid', 'text', (c) => c.notNull().references('accounts.aid'))
    .addColumn('key_id', 'text', (c) => c.notNull().references('api_tokens.key_id'))
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('last_seen_at', 'integer', (c) => c.notNull())
    .addColumn('expires_at', 'integer', (c) => c.notNull())
    .execute();
  // The per-account cap (oldest first), revocation with the API token, and the sweep.
  await sql`CREATE INDEX sessions_account ON sessions (aid, created_at)`.execute(db);
  await sql`CREATE INDEX sessions_token ON sessions (key_id)`.execute(db);
  await sql`CREATE INDEX sessions_expiry ON sessions (expires_at)`.execute(db);

  // The console's paginated lists and overview: an account's agents in list order (keyset
  // pagination), its API and bootstrap tokens newest first, its latest failures (partial: only
  // failed rows are in it, so the queue's hot paths do not maintain it).
  await sql`CREATE INDEX agents_account ON agents (aid, cid, created_at, id)`.execute(db);
  await sql`CREATE INDEX api_tokens_account ON api_tokens (aid, created_at, key_id)`.execute(db);
  await sql`CREATE INDEX bootstrap_tokens_account ON bootstrap_tokens (aid, created_at, id)`.execute(db);
  await sql`CREATE INDEX commands_failures ON commands (aid, id) WHERE state IN ('failed', 'timed_out')`.execute(db);
  // Commands counted by state without reading their rows (covering); one more index the queue's
  // writes maintain (bench/storage.ts commandLifecycle: within its run-to-run spread, docs/performance.md).
  await sql`CREATE INDEX commands_account_state ON commands (aid, state)`.execute(db);
}
