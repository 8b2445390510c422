/**
 * The heap's start-up window (control-plane/http/return-heap.plan.ts, return-heap.ts): the plan
 * read from the process's flags, and, in a real V8 with the server's `--heap-growing-percent=30`,
 * the growth factor V8 computes before, during and after the window.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { RETURN_HEAP_WINDOW_S, returnHeapPlan } from '../../control-plane/http/return-heap.plan.ts';
import { MAX_SPREAD_S, MIN_RETRY_AFTER_S } from '../../control-plane/queue/drain.plan.ts';

describe('the heap while agents come back after a start', () => {
  it('relaxes a fixed growth for the window, then puts the asked percent back; without one, changes nothing', () => {
    assert.deepEqual(returnHeapPlan(['--max-semi-space-size=2', '--heap-growing-percent=30']), { kind: 'relax', during: 0, after: 30, windowMs: RETURN_HEAP_WINDOW_S * 1000 });
    assert.deepEqual(returnHeapPlan(['--heap_growing_percent=10', '--heap-growing-percent=25'], 5), { kind: 'relax', during: 0, after: 25, windowMs: 5000 }, 'the last one wins, either spelling');
    assert.deepEqual(returnHeapPlan(['--heap-growing-percent', '40'], 1), { kind: 'relax', during: 0, after: 40, windowMs: 1000 });
    for (const argv of [[], ['--max-semi-space-size=2'], ['--heap-growing-percent=0'], ['--heap-growing-percent=x'], ['--heap-growing-percent=30', '--heap-growing-percent=-1']]) {
      assert.deepEqual(returnHeapPlan(argv), { kind: 'none' }, argv.join(' '));
    }
    assert.deepEqual(returnHeapPlan(['--heap-growing-percent=30'], 0), { kind: 'none' });
    // Long enough for the drain's latest return (Retry-After 2 + 30 s, + the agents' second).
    assert.ok(RETURN_HEAP_WINDOW_S > MIN_RETRY_AFTER_S + MAX_SPREAD_S + 1);
  });

  it('in V8 with --heap-growing-percent=30: ×1.3 before, V8 own factor in the window, a full GC started at its end, ×1.3 again after it', function () {
    this.timeout(30_000);
    const dir = mkdtempSync(join(tmpdir(), 'tether-return-heap-'));
    try {
      const module = pathToFileURL(fileURLToPath(new URL('../../control-plane/http/return-heap.ts', import.meta.url))).href;
      const probe = join(dir, 'probe.mjs');
      // Live memory grows as agents' sessions do; each gc() is a full GC that computes the next limit.
      writeFileSync(
        probe,
        `import { relaxHeapGrowthWhileAgentsReturn } from ${JSON.stringify(module)};
const keep = [];
const grow = () => { for (let i = 0; i < 20000; i++) keep.push({ a: i, b: 'x'.repeat(20) + i }); globalThis.gc(); };
grow(); grow(); console.log('--- window');
const end = relaxHeapGrowthWhileAgentsReturn(process.execArgv, 60);
grow(); grow(); console.log('--- end'); end();
// Nothing allocates or calls gc() here: a full GC in this half second is the one the end started.
setTimeout(() => { console.log('--- after'); grow(); grow(); }, 500);
`,
      );
      const out = execFileSync(process.execPath, ['--heap-growing-percent=30', '--trace-gc', '--trace-gc-verbose', '--expose-gc', probe], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const factors: Record<string, number[]> = { before: [], window: [], end: [], after: [] };
      let phase = 'before';
      let marksAtEnd = 0;
      for (const line of out.split('\n')) {
        if (line.startsWith('--- ')) phase = line.slice(4);
        const m = /\[HeapController\] factor ([0-9.]+)/.exec(line);
        if (m) factors[phase]!.push(Number(m[1]));
        if (phase === 'end' && /Mark-Compact/.test(line)) marksAtEnd++;
      }
      // The window's end starts a full GC itself (the limit it leaves is ×1.3).
      assert.equal(marksAtEnd, 1, out.split('\n').filter((l) => !/Scavenge/.test(l)).slice(-40).join('\n'));
      assert.ok(factors.before!.length > 0 && factors.window!.length > 0 && factors.after!.length > 0, JSON.stringify(factors));
      assert.ok(factors.before!.every((f) => f === 1.3), JSON.stringify(factors));
      assert.ok(factors.window!.every((f) => f > 1.3), `V8's own factor in the window: ${JSON.stringify(factors)}`);
      assert.ok(factors.after!.every((f) => f === 1.3), JSON.stringify(factors));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
