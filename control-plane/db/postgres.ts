/**
 * Opens the control plane's database on PostgreSQL (`tether server --database postgres://…`):
 * a pg pool behind Kysely's PostgresDialect. The repositories run the same Kysely queries as on
 * SQLite and, where the SQL must differ (the claim, lease extension, heartbeat JSON patching,
 * upserts), a PostgreSQL twin written next to the SQLite statement.
 *
 * Every connection gets a statement timeout (a stuck query fails with 503 storage_unavailable
 * rather than holding a request for ever) and parses bigint (int8) columns to numbers: the schema
 * stores epoch milliseconds and ids as bigint (postgres-schema.ts), all far below 2^53.
 */
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import type { Database } from './schema.ts';
import { registerPostgres, type Db } from './database.ts';

export interface PostgresOptions {
  url: string;
  /** Connections in the pool (each request takes one per query or transaction). */
  poolSize: number;
  /** A statement running longer is cancelled by the server. */
  statementTimeoutMs: number;
  /** Errors of idle pooled connections (the server restarted, the network dropped them). */
  onIdleError?: (err: Error) => void;
}

const INT8_OID = 20;
const parseInt8 = (v: string) => Number(v);

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** The URL with its password replaced, for logs and messages. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparsable database URL>';
  }
}

export function openPostgres(o: PostgresOptions): { db: Db; pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.poolSize,
    statement_timeout: o.statementTimeoutMs,
    connectionTimeoutMillis: 10_000,
    application_name: 'tether',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle connection that errors is dropped by the pool; without a listener it would crash the process.
  pool.on('error', (err) => o.onIdleError?.(err));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  registerPostgres(db);
  return { db, pool };
}
