/**
 * Retention sweep cost (issue 11): fills a control plane's database with finished commands and
 * their logs (written straight into SQLite: this measures the deletion, not the API), then runs
 * one retention sweep and reports how long it took and the event loop's longest stalls meanwhile.
 *
 *   node bench/retention.ts [--commands 200] [--lines 1000] [--lines-per-batch N] [--commands-per-batch N]
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ManualClock } from '../common/clock.ts';
import { silentLogger } from '../common/logger.ts';
import { startControlPlane } from '../control-plane/app.ts';
import { sqliteOf } from '../control-plane/db/database.ts';
import { Retention } from '../control-plane/queue/retention.ts';

const { values: flags } = parseArgs({
  options: { commands: { type: 'string', default: '200' }, lines: { type: 'string', default: '1000' }, 'lines-per-batch': { type: 'string' }, 'commands-per-batch': { type: 'string' } },
});
const nCommands = Number(flags.commands);
const nLines = Number(flags.lines);
const dataDir = mkdtempSync(join(tmpdir(), 'tether-retention-'));
const clock = new ManualClock();
const cp = await startControlPlane({ dataDir, host: '127.0.0.1', port: 0, retentionSeconds: 3600 }, { clock, log: silentLogger(), reaper: false });
try {
  await cp.accounts.createCluster((await cp.db.selectFrom('accounts').select('aid').executeTakeFirstOrThrow()).aid, { cid: 'bench' });
  const aid = (await cp.db.selectFrom('accounts').select('aid').executeTakeFirstOrThrow()).aid;
  const sqlite = sqliteOf(cp.db);
  const insertCommand = sqlite.prepare(
    `INSERT INTO commands (aid, cid, nid, type, spec, state, timeout_seconds, max_attempts, attempts, created_at, finished_at, outputs)
     VALUES (?, 'bench', NULL, 'manifest', '{}', 'succeeded', 600, 1, 1, ?, ?, '{}') RETURNING id`,
  ).pluck();
  const insertLine = sqlite.prepare(`INSERT INTO command_logs (command_id, ts, stream, text) VALUES (?, ?, 'stdout', ?)`);
  const text = 'x'.repeat(120);
  const fill = sqlite.transaction(() => {
    for (let c = 0; c < nCommands; c++) {
      const id = insertCommand.get(aid, clock.now(), clock.now()) as number;
      for (let l = 0; l < nLines; l++) insertLine.run(id, clock.now(), text);
    }
  });
  fill();
  const custom = Boolean(flags['lines-per-batch'] || flags['commands-per-batch']);
  if (custom) await cp.retention.stop(); // its timer would sweep alongside
  clock.advance(2 * 3600_000);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const t0 = performance.now();
  // The control plane's own sweeper, or one with other batch sizes (to compare them).
  const retention = custom
      ? new Retention({
          db: cp.db,
          clock,
          log: silentLogger(),
          retentionSeconds: 3600,
          ...(flags['lines-per-batch'] ? { linesPerBatch: Number(flags['lines-per-batch']) } : {}),
          ...(flags['commands-per-batch'] ? { commandsPerBatch: Number(flags['commands-per-batch']) } : {}),
        })
      : cp.retention;
  const swept = await retention.sweep();
  const ms = performance.now() - t0;
  loop.disable();
  console.log(
    JSON.stringify({
      ...swept,
      sweepMs: Math.round(ms),
      linesPerSecond: Math.round((swept.lines / ms) * 1000),
      eventLoopStallMs: { p50: +(loop.percentile(50) / 1e6).toFixed(2), p99: +(loop.percentile(99) / 1e6).toFixed(2), max: +(loop.max / 1e6).toFixed(2) },
    }),
  );
} finally {
  await cp.close();
  rmSync(dataDir, { recursive: true, force: true });
}
