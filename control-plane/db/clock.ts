/**
 * The database's clock, for replicas on PostgreSQL.
 *
 * Every time the queue stores or compares (submitted, claimed, a lease's expiry, a heartbeat, the
 * reaper's "now", an agent's heartbeat age) comes from the Clock the composition root hands to
 * the services. On SQLite there is one process, and its clock is the only one. On PostgreSQL
 * several replicas write the same rows: a replica whose clock ran a minute fast would expire the
 * leases other replicas just extended, and one running slow would keep dead agents' leases. So on
 * PostgreSQL the clock follows the database server's: its offset from this process's clock is
 * measured with `clock_timestamp()` at start and every SYNC_MS, and now() is Date.now() plus
 * that offset. Every replica then reads the database's time, within half a round trip (the
 * measurement's uncertainty, a millisecond on a LAN; leases are tens of seconds), without a
 * query per call on the hot paths. A failed re-measurement keeps the last offset (and is logged);
 * a failed first one stops the start, as the migrations would.
 */
import { sql } from 'kysely';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from './database.ts';

const SYNC_MS = 30_000;

export interface DatabaseClock extends Clock {
  /** The last measured offset (database minus this process), in milliseconds. */
  readonly offsetMs: number;
  stop(): void;
}

async function measure(db: Db): Promise<number> {
  const t0 = Date.now();
  const r = await sql<{ ms: number }>`SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms`.execute(db);
  const t1 = Date.now();
  return Number(r.rows[0]!.ms) - Math.round((t0 + t1) / 2);
}

export async function databaseClock(db: Db, log: Logger, syncMs = SYNC_MS): Promise<DatabaseClock> {
  let offset = await measure(db);
  if (Math.abs(offset) > 1000) log.warn({ offsetMs: offset }, "this host's clock differs from the database's by more than a second; the control plane uses the database's");
  const timer = setInterval(() => {
    measure(db).then(
      (o) => (offset = o),
      (err: unknown) => log.warn({ err }, "could not read the database's clock; the last offset is kept"),
    );
  }, syncMs);
  timer.unref();
  return {
    now: () => Date.now() + offset,
    get offsetMs() {
      return offset;
    },
    stop: () => clearInterval(timer),
  };
}
