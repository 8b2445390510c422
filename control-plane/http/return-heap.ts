/**
 * Lets V8 grow the heap on its own heuristics while agents come back after a start, then puts the
 * configured growth back (the decision and why: return-heap.plan.ts).
 *
 * The limit V8 set in the window (up to 4 × what survived) stays until the next full GC, which
 * with a steady fleet may be many minutes away: memory per held agent measured 135 KB against 88
 * with it left alone. So the window ends with one full GC started on purpose (`execution: 'async'`:
 * run from a task of V8's soon after, not inside this call), whose limit is the configured one. It
 * is a stop-the-world full GC, once per start, 42 s in (on a heap of ~110 MB at 5,000 agents).
 * `gc` comes from a context of its own: nothing in the server's global scope can call it.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { returnHeapPlan } from './return-heap.plan.ts';

type GcFunction = (options: { type: 'major'; execution: 'async' }) => void;

/** Starts the window; the returned function ends it early (a close). A no-op without a fixed growth. */
export function relaxHeapGrowthWhileAgentsReturn(execArgv: readonly string[] = process.execArgv, windowS?: number): () => void {
  const plan = returnHeapPlan(execArgv, windowS);
  if (plan.kind === 'none') return () => {};
  v8.setFlagsFromString(`--heap-growing-percent=${plan.during}`);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    v8.setFlagsFromString(`--heap-growing-percent=${plan.after}`);
    startFullGc();
  };
  const timer = setTimeout(end, plan.windowMs);
  timer.unref();
  return end;
}

/** One full GC, from a V8 task: the limit it leaves is the configured growth's. */
function startFullGc(): void {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined') as GcFunction | undefined;
    gc?.({ type: 'major', execution: 'async' });
  } catch {
    /* not available: the next full GC V8 starts on its own sets the limit */
  }
}
