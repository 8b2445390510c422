/**
 * Preloaded into the bench's control plane (`npm run bench -- --only throughput
 * --server-node-args=--import=./bench/gc-sync-count.ts`, with GC_COUNT_FILE=FILE in the
 * environment): once a second it appends to FILE the cumulative garbage collections by kind (from
 * a PerformanceObserver: `time minor major incremental other pause-ms`) and to FILE.syncs the
 * `fs.fdatasync` calls made so far (`time count`: the group commit's syncs, db/durability.ts).
 * V8 refuses `--trace-gc` in NODE_OPTIONS, which is how the bench passes server flags, hence
 * this. Issue 18, "The command path, second pass" in docs/performance.md: scavenges and commands
 * per fsync over the throughput phase are read off the two files between its start and end.
 */
import fs, { appendFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { PerformanceObserver, constants } from 'node:perf_hooks';

const file = process.env.GC_COUNT_FILE ?? 'gc-count.txt';
const n = { minor: 0, major: 0, incremental: 0, other: 0, ms: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MINOR) n.minor++;
    else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) n.major++;
    else if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) n.incremental++;
    else n.other++;
    n.ms += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

// The server imports `fdatasync` from node:fs after this runs: the wrapped function is what it gets.
const fdatasync = fs.fdatasync;
let syncs = 0;
fs.fdatasync = function (this: unknown, ...a: Parameters<typeof fs.fdatasync>) {
  syncs++;
  return fdatasync.apply(this, a);
} as typeof fs.fdatasync;
syncBuiltinESMExports();

setInterval(() => {
  const now = Date.now();
  appendFileSync(file, `${now} ${n.minor} ${n.major} ${n.incremental} ${n.other} ${n.ms.toFixed(1)}\n`);
  appendFileSync(`${file}.syncs`, `${now} ${syncs}\n`);
}, 1000).unref();
