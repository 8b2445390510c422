/**
 * V8's helper threads below the event loop, on request (issue 18). The control plane answers every
 * agent on one thread; V8 marks the old generation on its own worker threads ("V8Worker", concurrent
 * marking, ~0.3-0.5 s of CPU per major GC with 10,000 agents held). At equal priority those
 * threads can take the cores from the event loop: with 10,000 agents held on 2 cores the main
 * thread waited 140-300 ms to run (schedstat) in each major GC's second, 32-146 ms with the helpers
 * at nice 10. But on a saturated machine the helpers at nice 10 get little of a core (nice 10 weighs
 * 110 against the loop's 1,024), and a server that fell behind did not catch up: with ~20,000 held
 * 3 of 4 ramps failed at nice 10, 1 of 5 level. So they stay level unless
 * `TETHER_GC_THREADS_NICE` asks for steps below the loop (10 nice steps: set 10). Measured in
 * docs/performance.md, "V8's marking threads yield to the event loop" and "The helper threads
 * level again by default".
 *
 * Linux only: a thread's nice value is its own there (setpriority on a thread id), and raising it
 * needs no privilege. The threads exist from V8's start, before any of this code runs.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How many nice steps V8's helper threads run below the event loop unless `TETHER_GC_THREADS_NICE` says otherwise: none. */
export const DEFAULT_GC_THREADS_NICE = 0;

/** `TETHER_GC_THREADS_NICE`: 0 (level with the event loop, the default) to 19 steps below it; unset or empty: the default. */
export function gcThreadsNiceFromEnv(value: string | undefined): number | { error: string } {
  if (value === undefined || value === '') return DEFAULT_GC_THREADS_NICE;
  if (!/^\d{1,2}$/.test(value) || Number(value) > 19) return { error: `TETHER_GC_THREADS_NICE must be a whole number from 0 to 19 (got ${JSON.stringify(value.slice(0, 40))})` };
  return Number(value);
}

/** Thread names V8's platform gives its helpers (comm is cut at 15 bytes). */
const V8_HELPERS = /^(V8Worker|DelayedTaskSche)/;

/**
 * Puts this process's V8 helper threads `steps` nice values below the calling (main) thread, at most
 * 19; returns how many were set. Never throws: a thread that ended meanwhile, or a platform without
 * /proc, leaves the rest as they were.
 */
export function lowerGcThreads(steps: number): { threads: number; failed: number; nice: number } {
  const nice = Math.min(19, getPriority() + steps);
  let threads = 0;
  let failed = 0;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return { threads, failed, nice };
  }
  for (const tid of tids) {
    try {
      if (!V8_HELPERS.test(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8'))) continue;
      setPriority(Number(tid), nice);
      threads++;
    } catch {
      failed++;
    }
  }
  return { threads, failed, nice };
}
