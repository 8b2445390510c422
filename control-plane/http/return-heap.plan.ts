/**
 * How the control plane's heap grows while its agents come back after a start, decided without
 * I/O (the executor: return-heap.ts).
 *
 * `bin/tether server` runs V8 with `--heap-growing-percent=30` (memory per held agent: each full
 * GC lets the old generation grow by 30 % of what survived). In steady state that costs little. In
 * the minute after a start it does: the returning agents' sessions are new live memory, the heap
 * goes from ~40 MB to ~110 MB at 5,000 agents, and with 30 % of headroom (marking starts before the
 * limit) that was 34 full mark-compacts in 12 s, the concurrent marking threads using about as much
 * CPU as the main thread (docs/performance.md, "The restart storm, per returning agent"). While
 * agents return, V8's own heuristics decide the growth (percent 0: up to ×4 when the mutator
 * allocates fast); at the window's end the configured percent applies again, and one full GC
 * started then (return-heap.ts) sets the limit from what survived, bringing the heap back to its
 * steady size (left to the next full GC V8 starts itself, the window's limit stayed for minutes:
 * 135 KB per held agent against 88).
 *
 * V8 reads the flag each time it computes a limit (MemoryController::GrowingFactor), so setting it
 * at run time (v8.setFlagsFromString) changes the next limit and nothing else.
 */
import { MAX_SPREAD_S, MIN_RETRY_AFTER_S } from '../queue/drain.plan.ts';

/**
 * How long after the server starts listening agents are expected back: the drain's latest
 * Retry-After (MIN_RETRY_AFTER_S + MAX_SPREAD_S), the agents' jitter, and a heartbeat interval or
 * two for those that came back before the server was up.
 */
export const RETURN_HEAP_WINDOW_S = MIN_RETRY_AFTER_S + MAX_SPREAD_S + 10;

export type ReturnHeapPlan = { kind: 'none' } | { kind: 'relax'; during: 0; after: number; windowMs: number };

/**
 * From the process's Node/V8 arguments: relax the growth for the window only when a fixed growth
 * was asked (`--heap-growing-percent=N`, N > 0; the last one wins, as in V8). Without one V8 already
 * decides, and nothing is changed.
 */
export function returnHeapPlan(execArgv: readonly string[], windowS = RETURN_HEAP_WINDOW_S): ReturnHeapPlan {
  let percent: number | undefined;
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    const m = /^--heap[-_]growing[-_]percent(?:=(.*))?$/.exec(a);
    if (!m) continue;
    const v = m[1] ?? execArgv[i + 1];
    if (m[1] === undefined) i++;
    percent = v !== undefined && /^[0-9]{1,4}$/.test(v) ? Number(v) : undefined;
  }
  if (percent === undefined || percent <= 0 || !Number.isFinite(windowS) || windowS <= 0) return { kind: 'none' };
  return { kind: 'relax', during: 0, after: percent, windowMs: Math.round(windowS * 1000) };
}
