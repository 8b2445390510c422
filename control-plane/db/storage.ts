/**
 * The storage the control plane runs on, chosen once at the composition root: PostgreSQL when a
 * database URL is configured (`--database`, TETHER_DATABASE_URL), otherwise SQLite in the data
 * folder as always. The queue and the routes get the Kysely handle and never see which one; the
 * repositories pick their dialect's SQL where it must differ (database.ts, directOf).
 */
import { join } from 'node:path';
import type SQLite from 'better-sqlite3';
import { openDatabase, type Db } from './database.ts';
import { openPostgres, redactDatabaseUrl } from './postgres.ts';
import { startCheckpointer, type Checkpointer } from './checkpoint.ts';

export type Storage =
  | { dialect: 'sqlite'; db: Db; sqlite: SQLite.Database; file: string; checkpointer: Checkpointer; close(): Promise<void> }
  | { dialect: 'postgres'; db: Db; url: string; close(): Promise<void> };

export interface StorageConfig {
  dataDir: string;
  databaseUrl?: string | undefined;
  databasePoolSize: number;
  databaseStatementTimeoutMs: number;
}

export function openStorage(c: StorageConfig, onIdleError?: (err: Error) => void): Storage {
  if (c.databaseUrl) {
    const { db } = openPostgres({ url: c.databaseUrl, poolSize: c.databasePoolSize, statementTimeoutMs: c.databaseStatementTimeoutMs, ...(onIdleError ? { onIdleError } : {}) });
    let closed = false;
    return {
      dialect: 'postgres',
      db,
      url: redactDatabaseUrl(c.databaseUrl),
      async close() {
        if (closed) return;
        closed = true;
        await db.destroy(); // ends the pool
      },
    };
  }
  const file = join(c.dataDir, 'tether.db');
  const { db, sqlite } = openDatabase(file);
  // A worker thread copies the WAL beside the commits (checkpoint.ts), started after 5 s
  // (TETHER_SQLITE_CHECKPOINT_START_MS): a server runs for hours, a test's for seconds (until then
  // the main connection's checkpoints do it all). TETHER_SQLITE_CHECKPOINT=inline: the main
  // connection's automatic checkpoints alone, as before 2026-12-03.
  const startAfterMs = Number(process.env.TETHER_SQLITE_CHECKPOINT_START_MS ?? 5000);
  const checkpointer = startCheckpointer(sqlite, file, { startAfterMs: Number.isFinite(startAfterMs) ? startAfterMs : 5000 });
  return {
    dialect: 'sqlite',
    db,
    sqlite,
    file,
    checkpointer,
    async close() {
      await checkpointer.stop();
      await db.destroy();
      if (sqlite.open) sqlite.close();
    },
  };
}
