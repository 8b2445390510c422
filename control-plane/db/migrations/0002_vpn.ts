import { sql, type Kysely } from 'kysely';

/** The VPN: each node's wg0/wg1 addresses and public keys, and the users peered on wg1. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('vpn_nodes')
    .addColumn('agent_id', 'text', (c) => c.primaryKey().references('agents.id'))
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('nid', 'text', (c) => c.notNull())
    .addColumn('wg0_index', 'integer', (c) => c.notNull())
    .addColumn('wg1_index', 'integer', (c) => c.notNull())
    .addColumn('wg0_public_key', 'text')
    .addColumn('wg1_public_key', 'text')
    .addColumn('wg0_port', 'integer')
    .addColumn('wg1_port', 'integer')
    .addColumn('endpoint_host', 'text')
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .execute();
  await sql`CREATE UNIQUE INDEX vpn_nodes_wg0 ON vpn_nodes (aid, cid, wg0_index)`.execute(db);
  await sql`CREATE UNIQUE INDEX vpn_nodes_wg1 ON vpn_nodes (aid, cid, wg1_index)`.execute(db);

  await db.schema
    .createTable('vpn_users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('aid', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('wg1_index', 'integer', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('revoked_at', 'integer')
    .addForeignKeyConstraint('vpn_users_cluster_fk', ['aid', 'cid'], 'clusters', ['aid', 'cid'])
    .execute();
  await sql`CREATE UNIQUE INDEX vpn_users_index ON vpn_users (aid, cid, wg1_index) WHERE revoked_at IS NULL`.execute(db);
  await sql`CREATE UNIQUE INDEX vpn_users_name ON vpn_users (aid, cid, name) WHERE revoked_at IS NULL`.execute(db);
}
