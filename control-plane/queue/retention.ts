/**
 * Retention (issue 11): finished commands and their logs are deleted `retentionSeconds` after
 * they finished (`tether server --retention`, default 30d; 0 keeps everything). A sweep runs at
 * start and then every `intervalMs`, in small batches (50 commands, at most 500 log lines per
 * statement: 2,000 made the longest stall about half as long again for no more speed; see
 * bench/retention.ts) with the event loop free between them, so agents' requests are served in
 * between; a sweep that deleted anything ends with a passive WAL checkpoint. Freed pages are
 * reused by later writes (no VACUUM: it would rewrite the whole database with the loop blocked).
 * A job that an instance points at as its last job is kept (its state is the instance's state).
 */
import { setImmediate as yieldLoop } from 'node:timers/promises';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import { checkpoint, deleteCommands, deleteLogsOf, expiredCommands } from '../db/retention.repository.ts';
import { sweepWindows } from '../db/limits.repository.ts';

export interface RetentionOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  retentionSeconds: number;
  intervalMs?: number;
  /** Commands per batch, and log lines per DELETE. */
  commandsPerBatch?: number;
  linesPerBatch?: number;
  /** Replicas on PostgreSQL: also delete rate-limit windows closed for an hour (even with retention off). */
  sweepRateLimits?: boolean;
}

export class Retention {
  private readonly o: Required<RetentionOptions>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<{ commands: number; lines: number }> | undefined;
  private stopped = false;

  constructor(o: RetentionOptions) {
    this.o = { intervalMs: 10 * 60_000, commandsPerBatch: 50, linesPerBatch: 500, sweepRateLimits: false, ...o };
  }

  start(): void {
    if (this.o.retentionSeconds <= 0 && !this.o.sweepRateLimits) return;
    const tick = () => {
      this.sweep()
        .catch((err: unknown) => this.o.log.error({ err }, 'retention sweep failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.o.intervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, 1000).unref();
  }

  /** Stops the timer and waits for a sweep in progress to end (it stops after its current batch). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One sweep (concurrent calls share it); returns what it deleted. */
  sweep(): Promise<{ commands: number; lines: number }> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<{ commands: number; lines: number }> {
    const { db, clock, log, retentionSeconds, commandsPerBatch, linesPerBatch } = this.o;
    if (this.o.sweepRateLimits) await sweepWindows(db, clock.now() - 3600_000); // every window is at most a minute
    if (retentionSeconds <= 0) return { commands: 0, lines: 0 };
    const cutoff = clock.now() - retentionSeconds * 1000;
    let commands = 0;
    let lines = 0;
    while (!this.stopped) {
      const ids = await expiredCommands(db, cutoff, commandsPerBatch);
      if (ids.length === 0) break;
      for (;;) {
        const n = await deleteLogsOf(db, ids, linesPerBatch);
        lines += n;
        await yieldLoop();
        if (n < linesPerBatch || this.stopped) break;
      }
      if (this.stopped) break;
      commands += await deleteCommands(db, ids);
      await yieldLoop();
    }
    if (commands + lines > 0) {
      await checkpoint(db);
      log.info({ commands, lines, retentionSeconds }, 'retention: finished commands and their logs deleted');
    }
    return { commands, lines };
  }
}
