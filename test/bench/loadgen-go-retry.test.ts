/**
 * The Go load generator's port of common/agent/retry.plan.ts (bench/loadgen-go/retry.go) gives the
 * same waits as the plan the agent runtime uses: the cases are computed here by the TypeScript
 * retryDelay and checked by `go test` (bench/loadgen-go/retry_test.go). A simulated agent that
 * waits longer after a Retry-After than a real one (the port kept a jitter of a fifth of the wait
 * after the plan dropped it: up to 4 s more on a 20 s wait) makes the restart storm's figure the
 * load generator's, not the control plane's.
 *
 * Go is the toolchain's, as for loadgen-go.test.ts: without it this test fails.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { heartbeatDelay, retryDelay } from '../../common/agent/retry.plan.ts';

const SRC = resolve(import.meta.dirname, '../../bench/loadgen-go');

/** Runs the Go test `name` on `cases`, handed over as a JSON file named by the variable `env`; it must pass. */
function goTestWith(name: string, env: string, cases: unknown[]): void {
  const dir = mkdtempSync(join(tmpdir(), 'tether-retry-cases-'));
  try {
    const file = join(dir, 'cases.json');
    writeFileSync(file, JSON.stringify(cases));
    const r = spawnSync('go', ['test', '-count=1', '-run', name, '.'], {
      cwd: SRC,
      encoding: 'utf8',
      env: { ...process.env, [env]: file, CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-buildvcs=false -mod=mod' },
    });
    assert.equal(r.status, 0, `go test failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^ok\s/m, r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('bench: the Go load generator waits as the agent runtime does', function () {
  this.timeout(300_000); // a cold Go build cache compiles the standard library's test packages

  it('gives retry.plan.ts\'s wait and cause for Retry-After and backoff cases', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const cases = [];
    for (const retryAfterMs of [undefined, 0, 400, 1000, 5000, 13_000, 20_000, 59_500, 60_000, 120_000, 3_600_000]) {
      for (const attempt of [1, 2, 3, 7, 12]) {
        for (const r of [0, 0.25, 0.5, 0.999, random(), random()]) {
          const input = { attempt, retryAfterMs, minBackoffMs: 1000, maxBackoffMs: 60_000, random: r };
          cases.push({ ...input, ...retryDelay(input) });
        }
      }
    }
    // The wait the port used to give here (20 s asked, 4 s of jitter allowed) must now be the plan's.
    assert.ok(cases.some((c) => c.retryAfterMs === 20_000 && c.random === 0.999 && c.ms === 20_999), 'a 20 s Retry-After waits at most 21 s');
    goTestWith('TestRetryDelayMatchesThePlan', 'RETRY_CASES', cases);
  });

  it("gives retry.plan.ts's heartbeat backoff after failures in a row", () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const cases = [];
    for (const failures of [0, 1, 2, 3, 4, 5, 6, 9, 40, 1000]) {
      for (const [intervalMs, maxBackoffMs] of [[5000, 60_000], [100, 1600], [250, 60_000]] as const) {
        for (const r of [0, 0.5, 0.999, random(), random()]) {
          const input = { failures, intervalMs, maxBackoffMs, random: r };
          cases.push({ ...input, ms: heartbeatDelay(input) });
        }
      }
    }
    assert.ok(cases.some((c) => c.failures === 3 && c.intervalMs === 5000 && c.random === 0.5 && c.ms === 15_000), 'three failures at 5 s: 10-20 s');
    goTestWith('TestHeartbeatDelayMatchesThePlan', 'HEARTBEAT_CASES', cases);
  });
});
