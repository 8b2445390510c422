/**
 * Lets V8 grow the heap on its own heuristics while agents come back after a start, then puts the
 * configured growth back (the decision and why: return-heap.plan.ts).
 */
import v8 from 'node:v8';
import { returnHeapPlan } from './return-heap.plan.ts';

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
  };
  const timer = setTimeout(end, plan.windowMs);
  timer.unref();
  return end;
}
