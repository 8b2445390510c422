/**
 * Checkpoints off the request path (issue 18). A checkpoint copies the WAL's pages into the
 * database file and syncs both; with SQLite's automatic checkpoints alone it ran inside whichever
 * commit crossed the threshold (4,000 frames), on the event loop: the copy of the whole WAL and
 * two fsyncs, every request waiting. Here a worker thread with its own connection copies the WAL
 * every 200 ms (checkpoint.worker.ts, PASSIVE: the main thread keeps committing meanwhile).
 *
 * The main connection keeps its automatic checkpoint at 4,000 frames as the bound of the WAL.
 * Under a steady stream of commits a pass never finds the WAL entirely copied (commits land while
 * it copies), and only a writer that finds every frame copied starts the WAL over; so the WAL
 * still reaches the threshold, and the main thread's checkpoint then copies only what the worker
 * has not (the last pass's worth of commits, not the whole WAL) and, being the writer, completes:
 * the next commit starts the WAL over. If the worker is busy copying at that moment, the main
 * connection's PASSIVE checkpoint gives up at once (no wait) and a later commit tries again. When
 * the commits pause, a pass copies everything and the WAL starts over before the threshold.
 *
 * Durability (durability.ts) is unchanged: the worker's connection runs `synchronous = NORMAL`,
 * so SQLite syncs the WAL before copying and the database after, and marks frames copied only
 * then; the main connection restarts the WAL (overwriting frames) only when every frame is marked.
 * If the worker fails (it cannot open the file, or stops), the main connection's automatic
 * checkpoints go on alone, as before.
 *
 * On by default since 2026-12-03 (`TETHER_SQLITE_CHECKPOINT=inline` turns it off). bench/checkpoint.ts
 * had measured no difference with commands alone (their commits touch few pages: a checkpoint in a
 * commit stalled the loop ~10-40 ms at most). With 10,000 agents held, the heartbeat batch's
 * commits touch pages all over the agents table, the WAL reached the threshold every ~2.2 s, and
 * the checkpoint inside that commit stalled the event loop 45-85 ms (two fsyncs of ~10 and ~30 ms
 * among them): a stall over 40 ms in 15-17 seconds of each 30, heartbeat p99 115-175 ms. With the
 * worker, 4 such seconds (the major GCs'), the main thread's fsyncs ~0.5 ms, p99 85-110 ms, the
 * same CPU per heartbeat, ~25 MB more RSS (docs/performance.md, "The WAL's checkpoint off the
 * event loop").
 */
import { Worker } from 'node:worker_threads';
import { EventEmitter } from 'node:events';
import type SQLite from 'better-sqlite3';
import type { CheckpointMessage, CheckpointWorkerData } from './checkpoint.worker.ts';

/** The main connection's automatic checkpoint threshold (frames): the WAL's bound (database.ts sets it). */
export const INLINE_AUTOCHECKPOINT_PAGES = 4000;

export interface CheckpointStats {
  /** Passes that found frames in the WAL. */
  passive: number;
  /** The largest WAL seen by a pass, in frames (pages). */
  maxLogFrames: number;
  /** Time spent in passes on the worker's thread. */
  ms: number;
  failed: boolean;
}

export interface Checkpointer extends EventEmitter<{ checkpoint: [Extract<CheckpointMessage, { kind: 'checkpoint' }>]; failed: [Error] }> {
  readonly mode: 'worker' | 'inline';
  stats(): CheckpointStats;
  /**
   * A pass now, after everything committed before the call (the timer runs them anyway): the WAL's
   * frames and how many are copied after it; `undefined` when the worker is stopped or failed.
   */
  tick(): Promise<{ log: number; checkpointed: number } | undefined>;
  /** Stops the worker and waits for its connection to close (before the main connection closes). */
  stop(): Promise<void>;
}

class InlineCheckpoints extends EventEmitter<{ checkpoint: [Extract<CheckpointMessage, { kind: 'checkpoint' }>]; failed: [Error] }> implements Checkpointer {
  readonly mode = 'inline';
  stats(): CheckpointStats {
    return { passive: 0, maxLogFrames: 0, ms: 0, failed: false };
  }
  async tick(): Promise<undefined> {
    return undefined;
  }
  async stop(): Promise<void> {}
}

class WorkerCheckpoints extends EventEmitter<{ checkpoint: [Extract<CheckpointMessage, { kind: 'checkpoint' }>]; failed: [Error] }> implements Checkpointer {
  readonly mode = 'worker';
  private worker: Worker | undefined;
  private readonly data: CheckpointWorkerData;
  private readonly s: CheckpointStats = { passive: 0, maxLogFrames: 0, ms: 0, failed: false };
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();
  private readonly startTimer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private readonly waiting = new Map<number, (r: { log: number; checkpointed: number } | undefined) => void>();

  constructor(sqlite: SQLite.Database, data: CheckpointWorkerData, startAfterMs: number) {
    super();
    this.data = data;
    // The bound stays on the main connection (see above); the worker makes each of those cheap.
    sqlite.pragma(`wal_autocheckpoint = ${INLINE_AUTOCHECKPOINT_PAGES}`);
    if (startAfterMs <= 0) this.start();
    else {
      // A thread with its own SQLite costs ~85 ms of CPU to start: not for a process that stops at once (the CLI, tests).
      this.startTimer = setTimeout(() => this.start(), startAfterMs);
      this.startTimer.unref();
    }
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./checkpoint.worker.ts', import.meta.url), { workerData: this.data, name: 'tether-checkpoint' });
    this.worker = worker;
    // The worker never keeps the process alive on its own: the server's sockets and timers do.
    worker.unref();
    worker.on('message', (m: CheckpointMessage) => {
      if (m.kind === 'checkpoint') {
        this.s.passive++;
        this.s.maxLogFrames = Math.max(this.s.maxLogFrames, m.log);
        this.s.ms += m.ms;
        this.emit('checkpoint', m);
      } else if (m.kind === 'ticked') {
        this.waiting.get(m.id)?.(m.log < 0 ? undefined : { log: m.log, checkpointed: m.checkpointed });
        this.waiting.delete(m.id);
      } else if (m.kind === 'error') {
        this.fail(Object.assign(new Error(`checkpoint failed: ${m.message}`), { code: m.code }));
      }
    });
    worker.on('error', (err) => this.fail(err));
    this.exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        for (const w of this.waiting.values()) w(undefined);
        this.waiting.clear();
        if (!this.stopping) this.fail(new Error(`the checkpoint worker exited (${code})`));
        resolve();
      }),
    );
    return worker;
  }

  /** The worker is gone or its passes fail: the main connection's automatic checkpoints go on alone, as before. */
  private fail(err: Error): void {
    this.s.failed = true;
    if (this.listenerCount('failed') > 0) this.emit('failed', err);
  }

  stats(): CheckpointStats {
    return { ...this.s };
  }

  tick(): Promise<{ log: number; checkpointed: number } | undefined> {
    if (this.stopping || this.s.failed) return Promise.resolve(undefined);
    const worker = this.start();
    const id = ++this.ticks;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      worker.postMessage({ tick: id });
    });
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.exited;
    this.stopping = true;
    clearTimeout(this.startTimer);
    if (!this.worker) return;
    this.worker.postMessage('stop');
    const t = setTimeout(() => void this.worker?.terminate(), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

/** `TETHER_SQLITE_CHECKPOINT`: `worker` (the default) or `inline`; anything else is refused at start. */
export function checkpointModeFromEnv(value: string | undefined): 'worker' | 'inline' {
  if (value === undefined || value === '' || value === 'worker') return 'worker';
  if (value === 'inline') return 'inline';
  throw new Error(`TETHER_SQLITE_CHECKPOINT must be worker or inline (got ${JSON.stringify(value.slice(0, 40))})`);
}

/**
 * Starts checkpointing `file` (opened in WAL mode by openDatabase) off the main thread.
 * `intervalMs`: how often the worker copies; `startAfterMs`: the thread starts that much later
 * (or at the first tick). A worker that fails sets `failed` and emits it; a tick asked of it
 * answers undefined.
 */
export function startCheckpointer(sqlite: SQLite.Database, file: string, o: { intervalMs?: number; mode?: 'worker' | 'inline'; startAfterMs?: number } = {}): Checkpointer {
  const mode = o.mode ?? checkpointModeFromEnv(process.env.TETHER_SQLITE_CHECKPOINT);
  if (mode === 'inline') return new InlineCheckpoints();
  return new WorkerCheckpoints(sqlite, { file, intervalMs: o.intervalMs ?? 200 }, o.startAfterMs ?? 0);
}
