/**
 * Helpers for the fault and attack suite: how many iterations to run (bounded in `npm test`, long
 * in `npm run test:faults`), a control plane logger the test can read, and the command table read
 * straight from the SQLite file (what survived, not what an API says).
 */
import { Writable } from 'node:stream';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { pino, type Logger } from 'pino';
import { REDACT_PATHS } from '../../common/logger.ts';
import { isTerminal, type CommandState } from '../../common/wire.ts';
import { onPostgres, queryRowsSync } from '../support/postgres.ts';

/** `TETHER_FAULT_ITERATIONS` (the long form sets it), else the bounded count for `npm test`. */
export function faultIterations(bounded: number): number {
  const n = Number(process.env.TETHER_FAULT_ITERATIONS);
  return Number.isInteger(n) && n > 0 ? n : bounded;
}

export interface CapturedLog {
  log: Logger;
  /** Every line logged so far, parsed. */
  lines(): Record<string, unknown>[];
  text(): string;
}

/** A pino logger like the control plane's (same redaction), writing into memory. */
export function captureLogger(level = 'debug'): CapturedLog {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = pino({ level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, sink);
  const text = () => chunks.join('');
  return {
    log,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** Lines of a JSON log (a process's stdout) that parse; anything else is skipped. */
export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      /* a partial line */
    }
  }
  return out;
}

export interface CommandRecord {
  id: number;
  state: string;
  attempts: number;
  lease_id: string | null;
  lease_expires_at: number | null;
  claimed_by: string | null;
  claimed_at: number | null;
  finished_at: number | null;
  idempotency_key: string | null;
  max_attempts: number;
}

/** The commands table as stored in `<dataDir>/tether.db` (read-only connection). */
export function readCommands(dataDir: string): CommandRecord[] {
  // TETHER_TEST_DATABASE=postgres: the same columns from the data folder's PostgreSQL database.
  if (onPostgres) return queryRowsSync<CommandRecord>(resolve(dataDir), 'SELECT id, state, attempts, lease_id, lease_expires_at, claimed_by, claimed_at, finished_at, idempotency_key, max_attempts FROM commands ORDER BY id');
  const db = new Database(join(dataDir, 'tether.db'), { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare('SELECT id, state, attempts, lease_id, lease_expires_at, claimed_by, claimed_at, finished_at, idempotency_key, max_attempts FROM commands ORDER BY id')
      .all() as CommandRecord[];
  } finally {
    db.close();
  }
}

/** Every byte of the control plane's SQLite files. */
export function databaseBytes(dataDir: string): Buffer {
  return Buffer.concat(['tether.db', 'tether.db-wal', 'tether.db-shm'].map((f) => join(dataDir, f)).filter(existsSync).map((f) => readFileSync(f)));
}

/** Live (non-zombie) pids whose environment holds `NAME=value` (readable for our own processes). */
export function pidsWithEnv(entry: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(entry)) out.push(Number(d));
    } catch {
      /* gone, or not ours */
    }
  }
  return out;
}

/** Resident set size of a process in KiB (from /proc). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** A command state read from the database (a string there) is terminal: common/wire.ts's list. */
export const terminal = (state: string): boolean => isTerminal(state as CommandState);

/**
 * Waits until every command `read` returns is terminal, and returns them. The backlog a fault
 * test's drain works off is whatever its submitters got ahead of its workers, which depends on the
 * machine (577 commands on a loaded one), so the wait is for progress, not for a time: it fails
 * when no command has become terminal for `stalledAfterMs`, naming up to 20 that are not and what
 * `context()` adds (the drain's last error, the server's output).
 */
export async function untilAllTerminal<R extends { id: number | string; state: string; attempts: number | string }>(
  read: () => R[] | Promise<R[]>,
  stalledAfterMs: number,
  context: () => string = () => '',
): Promise<R[]> {
  let rows = await read();
  let done = rows.filter((r) => terminal(r.state)).length;
  let progressAt = Date.now();
  while (rows.length === 0 || done < rows.length) {
    if (Date.now() - progressAt > stalledAfterMs) {
      const open = rows.filter((r) => !terminal(r.state)).slice(0, 20).map((r) => `${r.id}:${r.state}(attempts ${r.attempts})`);
      throw new Error(`no command became terminal for ${stalledAfterMs} ms; ${rows.length - done} of ${rows.length} are not: ${open.join(' ')}; ${context()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
    rows = await read();
    const now = rows.filter((r) => terminal(r.state)).length;
    if (now > done) progressAt = Date.now();
    done = now;
  }
  return rows;
}
