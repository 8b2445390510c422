/**
 * Scheduled drift checks and autoSync, the pure decisions (control-plane/bundles/drift.plan.ts):
 * jitter bounds, the spread of first checks, off, skipping busy instances, the per-tick cap, and
 * autoSync's backoff. No processes, no clock: time and randomness are parameters.
 */
import assert from 'node:assert/strict';
import {
  AUTO_SYNC_BACKOFF_BASE_S,
  AUTO_SYNC_BACKOFF_MAX_S,
  BUSY_RETRY_S,
  autoSyncBackoffSeconds,
  decideAutoSync,
  driftView,
  firstCheck,
  nextAfterCheck,
  planTick,
  type DriftCandidate,
} from '../../control-plane/bundles/drift.plan.ts';
import { driftSettingsSchema } from '../../control-plane/bundles/bundles.wire.ts';

const NOW = Date.parse('2026-01-01T00:00:00Z');
const MIN = 60_000;
const settings = { defaultIntervalSeconds: 600, checksPerTick: 100 };
/** A deterministic uniform source (xorshift), so spreads are measured, not assumed. */
function rng(seed = 7): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
const inst = (osid: string, o: Partial<DriftCandidate> = {}): DriftCandidate => ({
  aid: 'a1',
  osid,
  driftIntervalSeconds: null,
  nextCheckAt: NOW - 1,
  deleted: false,
  busy: false,
  checking: false,
  ...o,
});

describe('bundles: drift check schedule and autoSync (pure)', () => {
  it('a next check lands within ±20 % of the interval, both ends reachable', () => {
    assert.equal(nextAfterCheck(NOW, 600, 0), NOW + 480_000);
    assert.equal(nextAfterCheck(NOW, 600, 0.5), NOW + 600_000);
    assert.equal(nextAfterCheck(NOW, 600, 0.999999), NOW + 720_000);
    const r = rng();
    for (let i = 0; i < 1000; i++) {
      const t = nextAfterCheck(NOW, 600, r());
      assert.ok(t >= NOW + 480_000 && t <= NOW + 720_000, `${t - NOW} ms`);
    }
  });

  it('200 instances placed in one tick spread over the whole first interval (no minute holds more than a few)', () => {
    const many = Array.from({ length: 200 }, (_, i) => inst(`web-${String(i).padStart(5, '0')}`, { nextCheckAt: null }));
    const plan = planTick(many, NOW, settings, rng());
    assert.equal(plan.check.length, 0, 'placing is not checking');
    assert.equal(plan.reschedule.length, 200);
    const perMinute = new Array<number>(10).fill(0);
    for (const r of plan.reschedule) {
      assert.ok(r.nextCheckAt! >= NOW && r.nextCheckAt! < NOW + 600_000);
      perMinute[Math.floor((r.nextCheckAt! - NOW) / MIN)]!++;
    }
    // Uniform: 20 a minute expected; all in one minute would be 200.
    for (const [m, n] of perMinute.entries()) assert.ok(n >= 8 && n <= 35, `minute ${m}: ${n} of 200 (${perMinute.join(' ')})`);
    assert.equal(firstCheck(NOW, 600, 0), NOW);
  });

  it('off (its own or the server default) and deleted instances get no check and lose their due time', () => {
    const plan = planTick(
      [inst('a-00001', { driftIntervalSeconds: 0 }), inst('b-00002', { deleted: true }), inst('c-00003'), inst('d-00004', { driftIntervalSeconds: 0, nextCheckAt: null })],
      NOW,
      settings,
      rng(),
    );
    assert.deepEqual(plan.check.map((c) => c.osid), ['c-00003']);
    assert.deepEqual(plan.reschedule, [
      { aid: 'a1', osid: 'a-00001', nextCheckAt: null },
      { aid: 'a1', osid: 'b-00002', nextCheckAt: null },
    ]);
    const serverOff = planTick([inst('c-00003'), inst('e-00005', { driftIntervalSeconds: 120 })], NOW, { ...settings, defaultIntervalSeconds: 0 }, rng());
    assert.deepEqual(serverOff.check.map((c) => c.osid), ['e-00005'], 'its own interval wins over the server off');
    const e = serverOff.check[0]!;
    assert.ok(e.nextCheckAt >= NOW + 96_000 && e.nextCheckAt <= NOW + 144_000, 'its own interval, jittered');
  });

  it('skips an instance with a job running or a diff outstanding, and tries it again soon; not due: nothing', () => {
    const plan = planTick([inst('a-00001', { busy: true }), inst('b-00002', { checking: true }), inst('c-00003', { nextCheckAt: NOW + 1 }), inst('d-00004')], NOW, settings, rng());
    assert.deepEqual(plan.check.map((c) => c.osid), ['d-00004']);
    assert.deepEqual(plan.skipped, [
      { osid: 'a-00001', reason: 'busy' },
      { osid: 'b-00002', reason: 'checking' },
    ]);
    assert.deepEqual(plan.reschedule, [
      { aid: 'a1', osid: 'a-00001', nextCheckAt: NOW + BUSY_RETRY_S * 1000 },
      { aid: 'a1', osid: 'b-00002', nextCheckAt: NOW + BUSY_RETRY_S * 1000 },
    ]);
  });

  it('submits at most checksPerTick, the most overdue first; the rest stay due for the next tick', () => {
    const due = Array.from({ length: 250 }, (_, i) => inst(`web-${String(i).padStart(5, '0')}`, { nextCheckAt: NOW - (250 - i) * 1000 }));
    const plan = planTick(due.slice().reverse(), NOW, { ...settings, checksPerTick: 100 }, rng());
    assert.equal(plan.check.length, 100);
    assert.equal(plan.deferred, 150);
    assert.deepEqual(
      plan.check.map((c) => c.osid),
      due.slice(0, 100).map((c) => c.osid),
    );
    assert.equal(plan.reschedule.length, 0, 'deferred ones keep their due time');
    for (const c of plan.check) assert.ok(c.nextCheckAt >= NOW + 480_000 && c.nextCheckAt <= NOW + 720_000);
  });

  it('autoSync: syncs a drifted check, never an errored one or when off; backs off when syncs do not repair', () => {
    const off = { autoSync: false, lastJobId: null, lastAt: null, failures: 0 };
    assert.deepEqual(decideAutoSync(off, 'drifted', NOW), { outcome: 'none' });
    const on = { ...off, autoSync: true };
    assert.deepEqual(decideAutoSync(on, 'drifted', NOW), { outcome: 'sync', failures: 0 });
    assert.deepEqual(decideAutoSync(on, 'error', NOW), { outcome: 'none' });
    assert.deepEqual(decideAutoSync(on, 'synced', NOW), { outcome: 'none' });
    // A sync was submitted (job 9) and the next check still finds drift: the second waits 5 min.
    const after1 = { ...on, lastJobId: 9, lastAt: NOW, failures: 0 };
    assert.deepEqual(decideAutoSync(after1, 'drifted', NOW + 60_000), { outcome: 'backoff', failures: 1, notBefore: NOW + AUTO_SYNC_BACKOFF_BASE_S * 1000 });
    assert.deepEqual(decideAutoSync(after1, 'drifted', NOW + AUTO_SYNC_BACKOFF_BASE_S * 1000), { outcome: 'sync', failures: 1 });
    const after3 = { ...on, lastJobId: 11, lastAt: NOW, failures: 2 };
    assert.equal((decideAutoSync(after3, 'drifted', NOW + 1000) as { notBefore: number }).notBefore, NOW + 4 * AUTO_SYNC_BACKOFF_BASE_S * 1000);
    assert.equal(autoSyncBackoffSeconds(100), AUTO_SYNC_BACKOFF_MAX_S);
    // A synced check forgets the failures.
    assert.deepEqual(decideAutoSync(after3, 'synced', NOW), { outcome: 'reset' });
  });

  it('settings: intervals of 60 s to one day or off, autoSync a boolean, nothing else', () => {
    for (const ok of [{ driftCheck: 'off' }, { driftCheck: { intervalSeconds: 60 } }, { driftCheck: { intervalSeconds: 86_400 } }, { autoSync: true }, { driftCheck: 'off', autoSync: false }]) {
      assert.ok(driftSettingsSchema.safeParse(ok).success, JSON.stringify(ok));
    }
    for (const bad of [{}, { driftCheck: { intervalSeconds: 59 } }, { driftCheck: { intervalSeconds: 86_401 } }, { driftCheck: { intervalSeconds: 1.5 } }, { driftCheck: 'on' }, { autoSync: 'yes' }, { driftCheck: 'off', other: 1 }]) {
      assert.equal(driftSettingsSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.deepEqual(driftView({ drift_interval_seconds: null, auto_sync: 0, next_check_at: NOW, last_action: 'apply' }, 600), { driftCheck: { intervalSeconds: 600 }, autoSync: false, nextCheckAt: new Date(NOW).toISOString() });
    assert.deepEqual(driftView({ drift_interval_seconds: 0, auto_sync: 1, next_check_at: NOW, last_action: 'apply' }, 600), { driftCheck: 'off', autoSync: true, nextCheckAt: null });
  });
});
