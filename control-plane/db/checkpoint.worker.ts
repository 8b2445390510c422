/**
 * The checkpointer's thread (checkpoint.ts): its own connection to the control plane's SQLite file
 * copies the WAL into the database on a timer, so that the main thread's commits find the WAL
 * (almost) copied when they reach the automatic checkpoint's threshold.
 *
 * Each tick runs `PRAGMA wal_checkpoint(PASSIVE)`: it copies every frame of the commits that had
 * ended when it started, without taking the writer's lock, so the main thread keeps committing
 * meanwhile. With `synchronous = NORMAL` on this connection SQLite syncs the WAL before it copies
 * and the database after, and only then marks the frames as copied (nBackfill); the main
 * connection starts the WAL over (overwriting frames) only once every frame is marked so. No
 * RESTART or TRUNCATE pass: those hold the writer back while they copy (measured: a 1.7 s stall of
 * the main thread, waiting in its busy handler, under 4,000 commands/s).
 */
import { parentPort, workerData } from 'node:worker_threads';
import SQLite from 'better-sqlite3';

export interface CheckpointWorkerData {
  file: string;
  intervalMs: number;
}

export type CheckpointMessage =
  | { kind: 'checkpoint'; busy: number; log: number; checkpointed: number; ms: number }
  | { kind: 'error'; message: string; code?: string }
  /** The answer to a pass asked for by the main thread (`{ tick: id }`): the WAL after it. */
  | { kind: 'ticked'; id: number; log: number; checkpointed: number }
  | { kind: 'stopped' };

interface PragmaRow {
  busy: number;
  log: number;
  checkpointed: number;
}

const { file, intervalMs } = workerData as CheckpointWorkerData;
const port = parentPort!;
const db = new SQLite(file, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
function tick(): PragmaRow | undefined {
  try {
    const t0 = performance.now();
    // busy = 1: the main connection's own (backstop) checkpoint was running; the next tick copies.
    const r = (db.pragma('wal_checkpoint(PASSIVE)') as PragmaRow[])[0]!;
    // log = -1: not in WAL mode (nothing to do); checkpointed counts frames copied so far in this WAL.
    if (r.log > 0) port.postMessage({ kind: 'checkpoint', busy: r.busy, log: r.log, checkpointed: r.checkpointed, ms: performance.now() - t0 } satisfies CheckpointMessage);
    return r;
  } catch (err) {
    const e = err as { message?: string; code?: string };
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
