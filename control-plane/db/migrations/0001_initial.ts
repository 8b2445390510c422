import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('accounts')
    .addColumn('aid', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('clusters')
    .addColumn('aid', 'text', (c) => c.notNull().references('accounts.aid'))
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('domain', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('clusters_pk', ['aid', 'cid'])
    .execute();

  await db.schema
    .createTable('agents')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('nid', 'text')
    .addColumn('control_plane', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('revoked_at', 'integer')
    .addColumn('last_heartbeat_at', 'integer')
    .addColumn('heartbeats', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('version', 'text')
    .addColumn('metrics', 'text')
    .addColumn('vpn', 'text')
    .addForeignKeyConstraint('agents_cluster_fk', ['aid', 'cid'], 'clusters', ['aid', 'cid'])
    .execute();
  await sql`CREATE UNIQUE INDEX agents_node_unique ON agents (aid, cid, nid) WHERE nid IS NOT NULL AND revoked_at IS NULL`.execute(db);

  await db.schema
    .createTable('certificates')
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('agent_id', 'text', (c) => c.notNull().references('agents.id'))
    .addColumn('not_before', 'integer', (c) => c.notNull())
    .addColumn('not_after', 'integer', (c) => c.notNull())
    .addColumn('revoked_at', 'integer')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('certificates_agent').on('certificates').column('agent_id').execute();

  await db.schema
    .createTable('bootstrap_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('control_plane', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'integer', (c) => c.notNull())
    .addColumn('used_at', 'integer')
    .addColumn('used_by_agent', 'text')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addForeignKeyConstraint('bootstrap_tokens_cluster_fk', ['aid', 'cid'], 'clusters', ['aid', 'cid'])
    .execute();

  await db.schema
    .createTable('api_tokens')
    .addColumn('key_id', 'text', (c) => c.primaryKey())
    .addColumn('aid', 'text', (c) => c.notNull().references('accounts.aid'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'integer', (c) => c.notNull())
    .addColumn('revoked_at', 'integer')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('commands')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('nid', 'text')
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('spec', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('idempotency_key', 'text')
    .addColumn('timeout_seconds', 'integer', (c) => c.notNull())
    .addColumn('max_attempts', 'integer', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('lease_id', 'text')
    .addColumn('lease_expires_at', 'integer')
    .addColumn('claimed_by', 'text')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('claimed_at', 'integer')
    .addColumn('finished_at', 'integer')
    .addColumn('outputs', 'text')
    .addColumn('error', 'text')
    .addColumn('cancel_requested_at', 'integer')
    .addForeignKeyConstraint('commands_cluster_fk', ['aid', 'cid'], 'clusters', ['aid', 'cid'])
    .execute();
  // The claim query walks this partial index: only queued commands, in submission order per target.
  await sql`CREATE INDEX commands_queued ON commands (aid, cid, nid, id) WHERE state = 'queued'`.execute(db);
  await sql`CREATE INDEX commands_running ON commands (claimed_by, lease_expires_at) WHERE state = 'running'`.execute(db);
  await sql`CREATE INDEX commands_running_lease ON commands (lease_expires_at) WHERE state = 'running'`.execute(db);
  await sql`CREATE UNIQUE INDEX commands_idempotency ON commands (aid, idempotency_key) WHERE idempotency_key IS NOT NULL`.execute(db);
  await db.schema.createIndex('commands_aid_id').on('commands').columns(['aid', 'id']).execute();

  await db.schema
    .createTable('command_logs')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('command_id', 'integer', (c) => c.notNull().references('commands.id'))
    .addColumn('ts', 'integer', (c) => c.notNull())
    .addColumn('stream', 'text', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('command_logs_command').on('command_logs').columns(['command_id', 'id']).execute();
}
