/**
 * The database side of backup and restore: an online snapshot with SQLite's backup API, the check
 * of a restored copy, and the data folder's lock that tells a running server from a stopped one.
 */
import { join } from 'node:path';
import SQLite from 'better-sqlite3';

export interface DatabaseSummary {
  migrations: string[];
  commands: number;
  agents: number;
}

function summary(db: SQLite.Database): DatabaseSummary {
  const has = (t: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t) !== undefined;
  const count = (t: string) => (has(t) ? (db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n : 0);
  return {
    migrations: has('kysely_migration') ? (db.prepare('SELECT name FROM kysely_migration ORDER BY name').all() as { name: string }[]).map((r) => r.name) : [],
    commands: count('commands'),
    agents: count('agents'),
  };
}

/**
 * Copies the live database `dbFile` (WAL; the server may be another process, writing) into
 * `destFile` with SQLite's online backup API, all pages in one step: the copy is the database as of
 * one read transaction, which in WAL mode never blocks the server's writers (a copy in several
 * steps would restart whenever another process writes in between). Returns what the copy holds.
 */
export async function snapshotDatabase(dbFile: string, destFile: string): Promise<DatabaseSummary & { bytes: number }> {
  const src = new SQLite(dbFile, { fileMustExist: true, timeout: 10_000 });
  try {
    await src.backup(destFile, { progress: () => 2 ** 30 });
  } finally {
    src.close();
  }
  const copy = new SQLite(destFile, { fileMustExist: true });
  try {
    copy.pragma('journal_mode = DELETE'); // one self-contained file in the archive
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`the snapshot fails SQLite's quick_check: ${String(check)}`);
    const { page_count } = copy.prepare('SELECT page_count * page_size AS page_count FROM pragma_page_count(), pragma_page_size()').get() as { page_count: number };
    return { ...summary(copy), bytes: page_count };
  } finally {
    copy.close();
  }
}

/** Opens a restored database file and checks it whole (integrity_check); returns what it holds. */
export function checkDatabase(file: string): DatabaseSummary {
  const db = new SQLite(file, { fileMustExist: true });
  try {
    const rows = db.pragma('integrity_check') as { integrity_check: string }[];
    if (rows.length !== 1 || rows[0]!.integrity_check !== 'ok') {
      throw new Error(`the database in the backup fails SQLite's integrity check: ${rows.slice(0, 5).map((r) => r.integrity_check).join('; ')}`);
    }
    return summary(db);
  } finally {
    db.close();
  }
}

/** The lock file in a data folder (an SQLite database used only for its file lock). */
export const LOCK_FILE = 'server.lock';

export interface DataDirLock {
  release(): void;
}

/**
 * Takes the data folder's lock: an exclusive SQLite lock held for as long as the process keeps it
 * (the kernel drops it when the process dies, kill -9 included, so it never goes stale). Returns
 * undefined when another holder (a running server, a restore) has it.
 */
export function lockDataDir(dataDir: string): DataDirLock | undefined {
  const db = new SQLite(join(dataDir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return undefined;
    throw err;
  }
  return {
    release() {
      if (!db.open) return;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}
