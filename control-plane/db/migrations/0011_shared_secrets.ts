import type { Kysely } from 'kysely';

/**
 * What every replica of a control plane on PostgreSQL must serve alike, by name: `ca` (the CA
 * certificate and its key, the key encrypted with AES-256-GCM under the operator's key) and
 * `tls_ticket_keys` (so a TLS session resumes on any replica). `value` is text (JSON); `version`
 * increases on every change (rotations are compare-and-set on it). Unused on SQLite, where the
 * data folder keeps them as before.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('shared_secrets')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .execute();
}
