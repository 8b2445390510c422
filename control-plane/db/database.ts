/**
 * Opens the control plane's SQLite database (WAL) and runs the forward-only migrations.
 * better-sqlite3 is synchronous and Kysely's SQLite driver serialises all queries on its one
 * connection, so every statement and transaction here runs alone: the queue's atomicity rests on it.
 */
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type SqliteDialectConfig } from 'kysely';
import { commitWrites, writeBatchOpen } from './write-batch.ts';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import * as m0001 from './migrations/0001_initial.ts';
import * as m0002 from './migrations/0002_vpn.ts';
import * as m0003 from './migrations/0003_bundles.ts';
import * as m0004 from './migrations/0004_tenant_limits.ts';
import * as m0005 from './migrations/0005_source_credentials.ts';
import * as m0006 from './migrations/0006_instance_versions.ts';
import * as m0007 from './migrations/0007_instance_sync.ts';
import * as m0008 from './migrations/0008_drift_schedule.ts';
import * as m0009 from './migrations/0009_sessions.ts';
import * as m0011 from './migrations/0011_shared_secrets.ts';
import * as m0013 from './migrations/0013_source_bundle.ts';
import * as m0014 from './migrations/0014_rate_limits.ts';
import * as m0015 from './migrations/0015_instances_last_job.ts';
import * as m0017 from './migrations/0017_commands_cancel_index.ts';
import type { Database } from './schema.ts';
import { postgresSchema } from './postgres-schema.ts';

export type Db = Kysely<Database>;

/** Numbered, forward-only; a new migration gets the next number and is never edited once released. */
const MIGRATIONS: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_vpn': m0002,
  '0003_bundles': m0003,
  '0004_tenant_limits': m0004,
  '0005_source_credentials': m0005,
  '0006_instance_versions': m0006,
  '0007_instance_sync': m0007,
  '0008_drift_schedule': m0008,
  '0009_sessions': m0009,
  '0011_shared_secrets': m0011,
  '0013_source_bundle': m0013,
  '0014_rate_limits': m0014,
  '0015_instances_last_job': m0015,
  '0017_commands_cancel_index': m0017,
};

class StaticMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

export interface OpenedDatabase {
  db: Db;
  sqlite: SQLite.Database;
}

export function openDatabase(file: string): OpenedDatabase {
  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives a process crash (kill -9) without losing a commit; only a power
  // loss can roll back the last transactions. FULL would fsync every heartbeat.
  sqlite.pragma(`synchronous = ${process.env.TETHER_SQLITE_SYNCHRONOUS === 'FULL' ? 'FULL' : 'NORMAL'}`);
  // Without the checkpoint worker (the server starts one: checkpoint.ts, which sets this to 0), a
  // checkpoint (WAL pages copied into the database file, then an fsync) runs on the committing
  // request's turn and blocks the event loop. SQLite's default, every 1,000 pages (4 MB), meant a
  // dozen checkpoints a second at 1,000 commands/s; every 4,000 pages (16 MB of WAL) there are a
  // quarter as many, and pages written again in between (index pages, the agents' rows) are copied
  // once. The WAL file is reused after each checkpoint, so it stays around that size.
  sqlite.pragma('wal_autocheckpoint = 4000');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({ dialect: new RollbackSafeSqliteDialect({ database: withStatementCache(sqlite) }, sqlite) });
  handles.set(db, sqlite);
  return { db, sqlite };
}

// ------------------------------------------------------------------ the hot paths' direct access
//
// Kysely builds, compiles and runs every query through a few promise hops: on the queue's hot
// paths (submit, claim, result, heartbeat, token lookup) that was most of the control plane's CPU
// per command. Those paths use better-sqlite3 directly instead: statements prepared once per
// database (below), run synchronously. The rest (admin reads, migrations, VPN, bundles) stays on
// Kysely. The SQL stays in this folder either way.

/** The better-sqlite3 handle behind each Db opened here (a Kysely Transaction has none). */
const handles = new WeakMap<object, SQLite.Database>();

/** Databases opened on PostgreSQL (postgres.ts); everything else is SQLite. */
const postgresDatabases = new WeakSet<object>();
export function registerPostgres(db: Kysely<any>): void {
  postgresDatabases.add(db);
}
export function isPostgres(db: Kysely<any>): boolean {
  return postgresDatabases.has(db);
}

/**
 * The hot paths' dialect switch: the SQLite handle for the direct path, or undefined on
 * PostgreSQL, where the caller runs its PostgreSQL twin (written next to it) through Kysely. The
 * SQLite path costs the same WeakMap lookup as sqliteOf; a Kysely transaction on SQLite is refused
 * as sqliteOf refuses it.
 */
export function directOf(db: Db): SQLite.Database | undefined {
  const sqlite = handles.get(db);
  if (sqlite || postgresDatabases.has(db)) return sqlite;
  return sqliteOf(db);
}

/** The handle behind `db`, or undefined when `db` is a Kysely transaction (callers fall back to Kysely). */
/** The better-sqlite3 handle under a database opened by openDatabase; undefined for a Kysely transaction. */
export function handleOf(db: Db): SQLite.Database | undefined {
  return handles.get(db);
}

/**
 * The handle the hot paths' prepared statements run on. Those functions take the database itself,
 * never a Kysely transaction: a statement meant to be part of a transaction must go through Kysely.
 */
export function sqliteOf(db: Db): SQLite.Database {
  const sqlite = handles.get(db);
  if (!sqlite) throw new Error('this repository function runs prepared statements on the database itself, not inside a Kysely transaction');
  return sqlite;
}

/**
 * Runs `fn` (synchronous better-sqlite3 work, so nothing else can run in between) on the database
 * alone. Kysely's own transactions span awaits on the same connection: a direct statement run
 * while one is open would become part of it (and be rolled back with it). So while one is open,
 * `fn` waits for its end through Kysely's connection lock, as any Kysely query would; otherwise
 * (the usual case) it runs at once, without a promise.
 */
export function exclusive<T>(db: Db, sqlite: SQLite.Database, fn: () => T): T | Promise<T> {
  // The write batch's transaction is not Kysely's: its statements join it (write-batch.ts).
  if (!sqlite.inTransaction || writeBatchOpen(sqlite)) return fn();
  return db.connection().execute(async () => fn());
}

/** Statements prepared once per database handle, on first use (after the migrations ran). */
export function prepared<T>(make: (sqlite: SQLite.Database) => T): (sqlite: SQLite.Database) => T {
  const byHandle = new WeakMap<SQLite.Database, T>();
  return (sqlite) => {
    let s = byHandle.get(sqlite);
    if (!s) {
      s = make(sqlite);
      byHandle.set(sqlite, s);
    }
    return s;
  };
}

/** Work to run before the handle closes (the heartbeat batch's last flush). */
const beforeClose = new WeakMap<SQLite.Database, (() => void)[]>();
export function onBeforeClose(sqlite: SQLite.Database, fn: () => void) {
  const list = beforeClose.get(sqlite) ?? [];
  list.push(fn);
  beforeClose.set(sqlite, list);
}
function runBeforeClose(sqlite: SQLite.Database) {
  const list = beforeClose.get(sqlite);
  beforeClose.delete(sqlite);
  for (const fn of list ?? []) fn();
}

/**
 * When a statement fails with SQLITE_FULL or an I/O error, SQLite has already rolled the whole
 * transaction back; Kysely's ROLLBACK then fails ("no transaction is active") and that error
 * replaced the real one (a 500 instead of 503 storage_unavailable). ROLLBACK is skipped when no
 * transaction is open, so the original error reaches the caller.
 */
class RollbackSafeSqliteDriver extends SqliteDriver {
  readonly #sqlite: SQLite.Database;
  constructor(config: SqliteDialectConfig, sqlite: SQLite.Database) {
    super(config);
    this.#sqlite = sqlite;
  }
  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.#sqlite.inTransaction) await super.rollbackTransaction(connection);
  }
  /** Kysely's queries and transactions start with the direct writes' batch committed (write-batch.ts). */
  override async acquireConnection(): Promise<DatabaseConnection> {
    const c = await super.acquireConnection();
    commitWrites(this.#sqlite);
    return c;
  }
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    commitWrites(this.#sqlite); // a batch opened since the connection was acquired (in the same turn)
    await super.beginTransaction(connection);
  }
}

class RollbackSafeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  readonly #sqlite: SQLite.Database;
  constructor(config: SqliteDialectConfig, sqlite: SQLite.Database) {
    super(config);
    this.#config = config;
    this.#sqlite = sqlite;
  }
  override createDriver(): SqliteDriver {
    return new RollbackSafeSqliteDriver(this.#config, this.#sqlite);
  }
}

/**
 * Kysely's SQLite driver prepares every statement on every call; keeping the prepared statements
 * (by SQL text, bounded) saves that on each request. A statement still iterating (busy) is never
 * handed out twice: a fresh one is prepared instead.
 */
function withStatementCache(sqlite: SQLite.Database, max = 500) {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => {
      if (sqlite.open) commitWrites(sqlite);
      if (sqlite.open) runBeforeClose(sqlite);
      sqlite.close();
    },
    prepare(sql: string): SQLite.Statement {
      const hit = cache.get(sql);
      if (hit && !hit.busy) return hit;
      const stmt = sqlite.prepare(sql);
      if (!hit) {
        if (cache.size >= max) cache.delete(cache.keys().next().value!);
        cache.set(sql, stmt);
      }
      return stmt;
    },
  };
}

/**
 * Runs the migrations not yet applied. On PostgreSQL the same migrations run through
 * postgresSchema (integer columns become bigint, the autoincrement ids bigserial), each in a
 * transaction, and Kysely's migrator holds a session advisory lock (pg_advisory_lock) while it
 * reads what was applied and applies the rest: replicas starting together on one database migrate
 * it once, the others wait and then find nothing left to do.
 */
export async function migrate(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db: isPostgres(db) ? db.withPlugin(postgresSchema) : db, provider: new StaticMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Whether the database's schema is this binary's: `pending` migrations this binary knows and the
 * database has not run, `unknown` ones the database ran that this binary does not know (a newer
 * replica migrated it). Both empty: current. For /readyz.
 */
export async function migrationStatus(db: Kysely<any>): Promise<{ pending: string[]; unknown: string[] }> {
  const migrator = new Migrator({ db, provider: new StaticMigrationProvider() });
  const known = await migrator.getMigrations();
  const executed = new Set(
    (await db.selectFrom('kysely_migration').select('name').execute().catch(() => [] as { name: string }[])).map((r: { name: string }) => r.name),
  );
  const names = new Set(known.map((m) => m.name));
  return { pending: known.filter((m) => !executed.has(m.name)).map((m) => m.name), unknown: [...executed].filter((n) => !names.has(n)) };
}
