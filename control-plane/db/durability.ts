/**
 * The durability barrier: every answer of the API that acknowledges a write waits until that write
 * is on disk, and the waits of many requests share one fsync (group commit). Heartbeats are the
 * exception, on purpose (below: "What the barrier does not cover").
 *
 * Writes commit as a WAL append with `synchronous=NORMAL` (no fsync at commit); the hot paths'
 * direct writes of one turn share one transaction (write-batch.ts), which the sync below commits
 * before it reads what it covers. Before an
 * answer is sent, its handler awaits `barrier()`, which resolves once a sync of the WAL that
 * *started after* the caller's commit has finished: `fdatasync` on a descriptor of `<db>-wal`, on
 * libuv's thread pool, so the event loop keeps serving while the disk works. All callers that
 * arrive while a sync is running wait for the next one, so one fsync acknowledges every commit
 * made meanwhile; at most two syncs separate a commit from its answer.
 *
 * Why it is safe (power loss, kernel crash):
 * - A commit in WAL mode is a run of frames appended to the WAL, the last one marked as a commit;
 *   recovery replays every valid frame up to the last commit frame whose checksum chain holds. Once
 *   `fdatasync` of the WAL returns, every frame written before the call began is on disk (a
 *   descriptor of our own: fsync applies to the file, not the descriptor), so every transaction
 *   committed before the sync started survives. The barrier never resolves for a sync that started
 *   before the caller called it, and callers call it after their commit (same JavaScript turn, or
 *   later), so an answer is never sent for a commit the disk does not hold.
 * - Checkpoints: with `synchronous=NORMAL` SQLite syncs the WAL before it copies frames into the
 *   database, and the database after; only then, once every frame is copied, does the next writer
 *   start the WAL over from its beginning (a new salt). So a frame is overwritten only after its
 *   content is durable in the database file, and a commit that was synced in the WAL stays durable
 *   through the restart. (With `synchronous=OFF` SQLite would skip those syncs and a restarted WAL
 *   could overwrite synced frames whose database pages were never synced: the barrier therefore
 *   requires NORMAL, and the database layer sets it.) A checkpoint that runs between a commit and
 *   its sync only syncs more.
 * - By default (TETHER_SQLITE_CHECKPOINT=worker) the server also checkpoints from a worker thread's own
 *   connection (checkpoint.ts), beside this connection's automatic checkpoint. The argument above holds unchanged: the syncs around the
 *   copy belong to the connection that checkpoints, and the worker's runs `synchronous=NORMAL`
 *   too; the copied mark (nBackfill) is shared memory (the -shm file) that SQLite advances only
 *   after the database's sync, and the WAL is started over only by a writer that sees every frame
 *   marked, whichever connection copied them. A checkpoint concurrent with our commits copies
 *   only frames of commits already ended (it reads up to its snapshot's last commit frame), and
 *   our fdatasync of the WAL is on the same file, so the two never undo each other's syncs.
 * - Coverage is tracked by a count of covered changes: `total_changes()` (rows changed by this
 *   connection, never decreasing) less the rows changed by the uncovered writes below (counted by
 *   `outsideBarrier`, also never decreasing; an uncovered write adds the same number to both, so
 *   the count never decreases and moves only with a covered change). A sync records the count when
 *   it starts, taken with no transaction open (it waits for Kysely's connection lock when one is
 *   open), so every change counted there is committed. A barrier whose current count equals the
 *   count of a finished sync has nothing new to wait for; equal to the count of the running sync,
 *   it waits for that sync; anything else waits for the next. So the invariant holds whatever
 *   uncovered commits come between a covered write and its barrier: the write raised the count
 *   past every sync that started before it, and an uncovered commit cannot bring it back to one.
 *   (Comparing `total_changes()` alone would stay safe but make an answer with nothing of its own
 *   wait for a sync after every heartbeat batch.) Changes that do not count (DDL: the migrations)
 *   are covered by the sync at start.
 * - A sync that fails (EIO) fails its waiters (503), and every later answer that would need a sync
 *   (anything committed since the last good one): after a failed fsync the kernel may have dropped
 *   the dirty pages, and a later "successful" fsync would prove nothing. The control plane must be
 *   restarted (recovery reads what is really on disk). Answers with nothing new to sync still go.
 * - The directory: the database and WAL files must be reachable after a power cut, so the folder
 *   is synced once at start, after the migrations created them.
 *
 * What the barrier does not cover: the heartbeat batch (agents.repository.ts). A heartbeat's
 * agent row (last-seen time, the beat counter, version, metrics, VPN state) is committed by its own
 * 50 ms timer, as with `normal`, through `outsideBarrier`, and the heartbeat's answer does not wait
 * for a sync: nothing in it is lost for good by a power cut. It is liveness, refreshed every 5 s;
 * the rest is sent again: an agent sends everything after each new connection (and at least every
 * 10 minutes), and a control plane that lost power comes back on new connections, so its first
 * beat after the restart writes what the lost beats held. What a heartbeat writes that is not sent
 * again in that sense stays covered: the lease extensions of the commands it runs (a lost extension
 * would let the reaper hand a running command to another agent after a restart, a rerun before the
 * lease the agent was granted had expired), so a heartbeat that names running commands, or whose
 * answer lists cancellations (state another answer acknowledges), awaits the barrier like any
 * other answer (queue.service.ts). Nothing else waits for the heartbeat batch: the batch's commit
 * does not move the count, so it makes no other answer wait.
 *
 * `normal` durability (today's behaviour) has no barrier: a commit survives `kill -9` but a power
 * cut can roll back the last transactions. With `TETHER_SQLITE_SYNCHRONOUS=FULL`, SQLite itself
 * syncs the WAL at every commit, on the main thread, the heartbeat batch's too; `full` then has
 * nothing to wait for (kept to compare against, see docs/performance.md "Durability"). On
 * PostgreSQL a commit is durable when it returns: the barrier is `noBarrier`.
 */
import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type SQLite from 'better-sqlite3';
import { commitWrites, enableWriteBatching, lostBatches, lostDuringRequest } from './write-batch.ts';
import { TetherError } from '../../common/errors.ts';
import type { Db } from './database.ts';

export type DurabilityMode = 'full' | 'normal';
export const DURABILITY_MODES = ['full', 'normal'] as const;

export interface Durability {
  readonly mode: DurabilityMode;
  /** How `full` is achieved: one shared fsync per group of commits, or SQLite's fsync per commit. */
  readonly method: 'group-commit' | 'fsync-per-commit' | 'database-commit' | 'none';
  /**
   * Resolves once everything committed before the call is on disk; `undefined` when that is
   * already so (no promise to await on the hot path).
   */
  barrier(): Promise<void> | undefined;
  /** fsyncs done, and the barriers they answered (for the bench and /metrics). */
  stats(): { syncs: number; waiters: number };
  close(): void;
}

/** Rows changed by uncovered writes, per connection, and its `total_changes()` statement. */
const uncovered = new WeakMap<SQLite.Database, { rows: number; total: SQLite.Statement }>();

/**
 * Runs a synchronous write the barrier does not cover (the heartbeat batch) and counts the rows it
 * changed, committed or not, so that the barrier leaves them out of its count. Never call it with
 * a transaction of someone else's open on the connection.
 */
export function outsideBarrier<T>(sqlite: SQLite.Database, write: () => T): T {
  let u = uncovered.get(sqlite);
  if (!u) uncovered.set(sqlite, (u = { rows: 0, total: sqlite.prepare('SELECT total_changes()').pluck() }));
  const before = Number(u.total.get());
  try {
    return write();
  } finally {
    if (sqlite.open) u.rows += Number(u.total.get()) - before;
  }
}

/**
 * Test seam (tests only, never set by the server): when it returns a promise, each WAL sync of the
 * group commit waits for it after taking its count and before its fdatasync, so a test can hold a
 * sync open and see which answers wait for it.
 */
export const walSyncHoldForTests: { hold: (() => Promise<void> | undefined) | undefined } = { hold: undefined };

/** `normal`: nothing to wait for (a commit is a WAL append). */
export const noBarrier: Durability = { mode: 'normal', method: 'none', barrier: () => undefined, stats: () => ({ syncs: 0, waiters: 0 }), close: () => {} };

/** A database whose commit returns only once it is durable (PostgreSQL, synchronous_commit on): full, and nothing to wait for. */
export const commitIsDurable: Durability = { mode: 'full', method: 'database-commit', barrier: () => undefined, stats: () => ({ syncs: 0, waiters: 0 }), close: () => {} };

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
  waiters: number;
}
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A rejection nobody awaited (every waiter's request already gone) must not crash the process.
  promise.catch(() => {});
  return { promise, resolve, reject, waiters: 0 };
}

export function storageUnavailable(cause: unknown): TetherError {
  const code = (cause as { code?: unknown } | null)?.code;
  return new TetherError('storage_unavailable', `storage is unavailable (${typeof code === 'string' ? code : 'sync failed'}); the change may not be on disk`, {
    status: 503,
    retryable: true,
    cause,
  });
}

/**
 * The barrier for a SQLite database opened by openDatabase (WAL, `synchronous` NORMAL or FULL),
 * after its migrations ran. `file` is the database file's path.
 */
export function openDurability(o: { db: Db; sqlite: SQLite.Database; file: string; mode: DurabilityMode }): Durability {
  if (o.mode === 'normal') return noBarrier;
  const synchronous = Number(o.sqlite.pragma('synchronous', { simple: true }));
  if (synchronous >= 2) return new PerCommitSync();
  if (synchronous !== 1) throw new Error('the durability barrier needs synchronous=NORMAL (with OFF a checkpoint does not sync)');
  return new GroupCommit(o.db, o.sqlite, o.file);
}

class GroupCommit implements Durability {
  readonly mode = 'full';
  readonly method = 'group-commit';
  private readonly db: Db;
  private readonly sqlite: SQLite.Database;
  private readonly changes: SQLite.Statement;
  private readonly fd: number;
  /** total_changes() when the last finished sync started. */
  private durable: number;
  /** The running sync: the count it covers and its waiters. */
  private running: { changes: number; d: Deferred } | undefined;
  /** Waiters for the sync after the running one. */
  private next: Deferred | undefined;
  private failed: TetherError | undefined;
  /** The last write batch lost (write-batch.ts): refused to the requests that were in progress then. */
  private batchLostError: TetherError | undefined;
  /** The sync loop is running (between syncs it may be waiting for a transaction to end). */
  private looping = false;
  private syncs = 0;
  private waiters = 0;

  constructor(db: Db, sqlite: SQLite.Database, file: string) {
    this.db = db;
    this.sqlite = sqlite;
    this.changes = sqlite.prepare('SELECT total_changes()').pluck();
    // The WAL exists once the migrations have read the database. Read-only is enough for fdatasync.
    this.fd = openSync(`${file}-wal`, 'r');
    // What the migrations wrote, and the folder entries of the database and its WAL.
    fsyncSync(this.fd);
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    this.durable = this.count();
    // The hot paths' writes of one turn share a transaction (write-batch.ts): safe only here, where
    // every acknowledgment waits for a sync that commits the batch first (loop()).
    enableWriteBatching(sqlite, (err) => this.batchLost(err));
  }

  /** A failed sync: every answer that needs a sync is refused from now on (the control plane must be restarted). */
  private fail(err: unknown): void {
    this.failed ??= storageUnavailable(err);
    this.next?.reject(this.failed);
    this.next = undefined;
  }

  /**
   * A write batch SQLite rolled back: the answers waiting for the next sync are refused (their
   * writes may be among the lost ones), and so is every later one of a request that was in
   * progress at the loss (barrier(), write-batch.ts). Requests after it are served.
   */
  private batchLost(err: unknown): void {
    this.batchLostError = storageUnavailable(err);
    this.next?.reject(this.batchLostError);
    this.next = undefined;
  }

  /** The covered changes: every row changed on this connection but those of outsideBarrier. */
  private count(): number {
    return Number(this.changes.get()) - (uncovered.get(this.sqlite)?.rows ?? 0);
  }

  barrier(): Promise<void> | undefined {
    // Before anything else: a lost write raised the count as a kept one does, and a later sync covers it.
    if (this.batchLostError && lostDuringRequest()) return Promise.reject(this.batchLostError);
    const now = this.count();
    if (now === this.durable) return undefined;
    if (this.failed) return Promise.reject(this.failed);
    if (this.running && now === this.running.changes) {
      this.running.d.waiters++;
      return this.running.d.promise;
    }
    const d = (this.next ??= deferred());
    d.waiters++;
    if (!this.running && !this.looping) void this.run();
    return d.promise;
  }

  private async run(): Promise<void> {
    this.looping = true;
    try {
      await this.loop();
    } finally {
      this.looping = false;
    }
  }

  private async loop(): Promise<void> {
    while (this.next && !this.failed) {
      const d = this.next;
      this.next = undefined;
      // A consistent point: the turn's write batch committed, and no Kysely transaction open (its
      // changes would be counted uncommitted).
      const lostBefore = lostBatches();
      commitWrites(this.sqlite);
      if (lostBatches() !== lostBefore) {
        d.reject(this.batchLostError); // their writes went with the batch
        continue;
      }
      const covered = this.sqlite.inTransaction ? await this.db.connection().execute(async () => this.count()) : this.count();
      this.running = { changes: covered, d };
      try {
        const hold = walSyncHoldForTests.hold?.();
        if (hold) await hold;
        await new Promise<void>((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
        this.durable = covered;
        this.syncs++;
        this.waiters += d.waiters;
        this.running = undefined;
        d.resolve();
      } catch (err) {
        this.running = undefined;
        this.fail(err);
        d.reject(this.failed);
      }
    }
  }

  stats() {
    return { syncs: this.syncs, waiters: this.waiters };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** `synchronous=FULL`: SQLite syncs at each commit (the heartbeat batch's too), so an answer has nothing to wait for. */
class PerCommitSync implements Durability {
  readonly mode = 'full';
  readonly method = 'fsync-per-commit';
  barrier(): Promise<void> | undefined {
    return undefined;
  }
  stats() {
    return { syncs: 0, waiters: 0 };
  }
  close(): void {}
}
