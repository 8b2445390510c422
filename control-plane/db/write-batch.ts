/**
 * The write batch: the hot paths' direct writes (a command's insert, claim and completion) made in
 * one turn of the event loop share one SQLite transaction, committed at the end of the turn
 * (setImmediate) or earlier when something needs it committed (the durability barrier's next sync,
 * a Kysely query, the heartbeat batch, closing).
 *
 * Why: in autocommit each of those writes is a transaction of its own, and each commit appends
 * every page it touched to the WAL: 14.5 frames (29 `pwrite64`) per command, the table's and its
 * indexes' pages written again by the next command's commit a few microseconds later. Sharing the
 * transaction writes each page once per batch: 2.0 frames per command with 10 commands a batch,
 * and the three writes' CPU from ~140-160 to ~35-55 µs per command (docs/performance.md, issue 18).
 *
 * Why it is safe: it is on only under the durability barrier (durability.ts, GroupCommit), where no
 * answer that acknowledges a write goes out before a sync that started after its commit; the
 * barrier's sync commits the open batch before it reads what it covers, so an acknowledged write is
 * committed and synced as before. A write that is not acknowledged may stay uncommitted until the
 * end of its turn: a crash then loses it, as it would have lost its answer. Without the barrier
 * (`normal`, or SQLite's own FULL) `batched` is a plain autocommit write, as before.
 *
 * What can go wrong: a failing statement undoes only itself (SQLite's statement rollback), unless
 * SQLite rolls the whole transaction back (some I/O and full-disk errors), and a COMMIT can fail (a
 * full disk: the WAL is written at COMMIT). Then writes of the batch other than the failing one were
 * already reported done to their callers: the batch is lost. Its writes' answers must be refused,
 * and those answers may be awaited later than the loss, by any request that was in progress when it
 * happened (a held poll whose claim another request's turn made, a handler that awaits more before
 * answering). So every request runs in `runRequest`, which notes the count of lost batches when it
 * starts, and the barrier refuses (storage_unavailable) any request that started before a loss
 * (`lostDuringRequest`); requests that start after it are served as before, so a disk that filled
 * up and was freed needs no restart. `onLost` is also told, for the waiters already queued.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type SQLite from 'better-sqlite3';

interface Batch {
  open: boolean;
  scheduled: boolean;
  onLost: (err: unknown) => void;
  begin: SQLite.Statement;
  commit: SQLite.Statement;
  rollback: SQLite.Statement;
}

const batches = new WeakMap<SQLite.Database, Batch>();

/** Batches lost since the process started, and the count each request started with. */
let lost = 0;
const requestStart = new AsyncLocalStorage<number>();

/** How many batches were lost since the process started. */
export function lostBatches(): number {
  return lost;
}

/** Runs a request's handling (everything it awaits included) with the count of lost batches at its start. */
export function runRequest<T>(handle: () => T): T {
  return requestStart.run(lost, handle);
}

/**
 * Whether a write batch was lost since the current request started, so that a write of it may be
 * among the lost ones; outside any request, whether one was ever lost.
 */
export function lostDuringRequest(): boolean {
  return lost > (requestStart.getStore() ?? 0);
}

/** Direct writes on this connection share a transaction per turn from now on; `onLost` hears of a batch SQLite rolled back. */
export function enableWriteBatching(sqlite: SQLite.Database, onLost: (err: unknown) => void): void {
  batches.set(sqlite, { open: false, scheduled: false, onLost, begin: sqlite.prepare('BEGIN'), commit: sqlite.prepare('COMMIT'), rollback: sqlite.prepare('ROLLBACK') });
}

/** Whether a write batch is open on the connection (its transaction is ours, not Kysely's). */
export function writeBatchOpen(sqlite: SQLite.Database): boolean {
  return batches.get(sqlite)?.open === true;
}

/**
 * Runs one direct write (synchronous) in the connection's batch, opening it if none is open.
 * Call it only where no other transaction can be open on the connection (inside `exclusive`).
 */
export function batched<T>(sqlite: SQLite.Database, write: () => T): T {
  const b = batches.get(sqlite);
  if (!b || (sqlite.inTransaction && !b.open)) return write();
  if (!b.open) {
    b.begin.run();
    b.open = true;
    if (!b.scheduled) {
      b.scheduled = true;
      setImmediate(() => {
        b.scheduled = false;
        commitWrites(sqlite);
      });
    }
  }
  try {
    return write();
  } catch (err) {
    // SQLite rolled the whole transaction back: the batch's earlier writes are gone too.
    if (!sqlite.inTransaction) lose(b, err);
    throw err;
  }
}

/** Commits the open batch now (before anything that needs its writes committed). */
export function commitWrites(sqlite: SQLite.Database): void {
  const b = batches.get(sqlite);
  if (!b?.open) return;
  if (!sqlite.open || !sqlite.inTransaction) {
    b.open = false;
    if (sqlite.open) lose(b, new Error('the write batch was rolled back'));
    return;
  }
  try {
    b.commit.run();
    b.open = false;
  } catch (err) {
    try {
      if (sqlite.inTransaction) b.rollback.run();
    } catch {
      /* the error reported is the commit's */
    }
    lose(b, err);
  }
}

function lose(b: Batch, err: unknown): void {
  b.open = false;
  lost++;
  b.onLost(err);
}
