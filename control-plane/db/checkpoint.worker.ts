/**
 * The checkpointer's thread (checkpoint.ts): its own connection to the control plane's SQLite file
 * copies the WAL into the database on a timer, so the main thread's commits never run a
 * checkpoint (`wal_autocheckpoint = 0` there).
 *
 * Each tick runs `PRAGMA wal_checkpoint(PASSIVE)`: it copies every frame no reader still needs
 * without taking the writer's lock, so the main thread keeps committing meanwhile. With
 * `synchronous = NORMAL` on this connection SQLite syncs the WAL before it copies and the database
 * after, and only then marks the frames as copied (nBackfill); the main connection starts the WAL
 * over (overwriting frames) only once every frame is marked so. When the WAL still holds more
 * than `restartPages` frames after a PASSIVE pass (the writer never found it fully copied: commits
 * landed during every pass), a `RESTART` pass copies the tail while holding writers back (they
 * wait in their busy handler for that tail only) and makes the next commit start the WAL over: the
 * WAL file stays bounded.
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';

export interface CheckpointWorkerData {
  file: string;
  intervalMs: number;
  restartPages: number;
}

export type CheckpointMessage =
  | { kind: 'checkpoint'; mode: 'PASSIVE' | 'RESTART'; busy: number; log: number; checkpointed: number; ms: number }
  | { kind: 'error'; message: string; code?: string }
  /** The answer to a pass asked for by the main thread (`{ tick: id }`): the WAL after it. */
  | { kind: 'ticked'; id: number; log: number; checkpointed: number }
  | { kind: 'stopped' };

interface PragmaRow {
  busy: number;
  log: number;
  checkpointed: number;
}

const { file, intervalMs, restartPages } = workerData as CheckpointWorkerData;
const port = parentPort!;
const db = new SQLite(file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
// A RESTART pass waits this long for the writer's current transaction (the main thread's commits are short).
db.pragma('busy_timeout = 2000');

function pass(mode: 'PASSIVE' | 'RESTART'): PragmaRow {
  const t0 = performance.now();
  const r = (db.pragma(`wal_checkpoint(${mode})`) as PragmaRow[])[0]!;
  // log = -1: not in WAL mode (nothing to do); checkpointed counts frames copied so far in this WAL.
  if (r.log > 0) port.postMessage({ kind: 'checkpoint', mode, busy: r.busy, log: r.log, checkpointed: r.checkpointed, ms: performance.now() - t0 } satisfies CheckpointMessage);
  return r;
}

function tick(): PragmaRow | undefined {
  try {
    const r = pass('PASSIVE');
    return r.log > restartPages ? pass('RESTART') : r;
  } catch (err) {
    const e = err as { message?: string; code?: string };
    // SQLITE_BUSY on RESTART: a long transaction; the next tick tries again.
    if (e.code !== 'SQLITE_BUSY') port.postMessage({ kind: 'error', message: String(e.message), ...(e.code ? { code: e.code } : {}) } satisfies CheckpointMessage);
    return undefined;
  }
}
const timer = setInterval(tick, intervalMs);
timer.unref();
port.on('message', (m: unknown) => {
  if (typeof m === 'object' && m !== null && typeof (m as { tick?: unknown }).tick === 'number') {
    const r = tick();
    port.postMessage({ kind: 'ticked', id: (m as { tick: number }).tick, log: r?.log ?? -1, checkpointed: r?.checkpointed ?? -1 } satisfies CheckpointMessage);
    return;
  }
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.postMessage({ kind: 'stopped' } satisfies CheckpointMessage);
  port.close();
});
