/**
 * The cost of the shared rate limits on PostgreSQL (issue 15): what one log batch pays for the
 * per-agent log rate counted across replicas (SharedLogQuota.take, one upsert), what a failed
 * bootstrap or sign-in pays (SharedFailureLimiter.fail, one upsert) and a check (one read by key),
 * beside the in-memory LogQuota that one SQLite process uses and a bare `SELECT 1` round trip.
 * A real PostgreSQL on loopback (test/support/postgres.ts: Debian's package, fsync off as in the
 * tests, so these are the statements' CPU and round trip, not a disk's). Sequential calls from 50
 * agents / addresses. Usage: node bench/limits.ts [calls]; prints a table and one JSON line.
 */
import { sql } from 'kysely';
import { openStorage } from '../control-plane/db/storage.ts';
import { LogQuota, SharedLogQuota } from '../control-plane/queue/log-quota.ts';
import { SharedFailureLimiter } from '../control-plane/http/rate-limit.ts';
import { freshDatabase, stopPostgres } from '../test/support/postgres.ts';
import { summarize, type LatencySummary } from './lib/util.ts';

const calls = Number(process.argv[2] ?? 5000);

async function measure(name: string, fn: (i: number) => unknown): Promise<{ name: string; latencyMs: LatencySummary; cpuUsPerCall: number }> {
  for (let i = 0; i < 200; i++) await fn(i); // warm-up
  const samples: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await fn(i);
    samples.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  return { name, latencyMs: summarize(samples), cpuUsPerCall: Math.round(((cpu.user + cpu.system) / calls) * 10) / 10 };
}

const url = await freshDatabase();
const storage = openStorage({ dataDir: '.', databaseUrl: url, databasePoolSize: 4, databaseStatementTimeoutMs: 5000 });
const db = storage.db;
try {
  const now = () => Date.now();
  const big = 1 << 30; // never refused: the cost of counting, not of refusing
  const shared = new SharedLogQuota(db, big, now);
  const memory = new LogQuota(big);
  const failures = new SharedFailureLimiter(db, 'bench', big, now);
  const rows = [
    await measure('SELECT 1 (round trip)', () => sql`SELECT 1`.execute(db)),
    await measure('LogQuota.take (in memory, SQLite)', (i) => memory.take(`ag-${i % 50}`, 4096)),
    await measure('SharedLogQuota.take (one upsert)', (i) => shared.take(`ag-${i % 50}`, 4096)),
    await measure('SharedFailureLimiter.check (one read)', (i) => failures.check(`10.0.0.${i % 50}`)),
    await measure('SharedFailureLimiter.fail (one upsert)', (i) => failures.fail(`10.0.0.${i % 50}`)),
  ];
  for (const r of rows) process.stdout.write(`${r.name.padEnd(40)} p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms  CPU ${r.cpuUsPerCall} µs/call (this process)\n`);
  process.stdout.write(`${JSON.stringify({ calls, rows })}\n`);
} finally {
  await storage.close();
  await stopPostgres();
}
