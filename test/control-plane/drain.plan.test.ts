/** What a draining control plane asks its held agents (control-plane/queue/drain.plan.ts): pure, no I/O. */
import assert from 'node:assert/strict';
import { MAX_SPREAD_S, MIN_RETRY_AFTER_S, RETURN_RATE_PER_SECOND, drainRetryAfterSeconds, drainSpreadSeconds } from '../../control-plane/queue/drain.plan.ts';

describe('drain: when the held agents are asked to come back', () => {
  it('spreads the returns over held / rate seconds, at least 1, at most MAX_SPREAD_S', () => {
    assert.equal(drainSpreadSeconds(0), 1);
    assert.equal(drainSpreadSeconds(1), 1);
    assert.equal(drainSpreadSeconds(RETURN_RATE_PER_SECOND), 1);
    assert.equal(drainSpreadSeconds(RETURN_RATE_PER_SECOND + 1), 2);
    assert.equal(drainSpreadSeconds(10_000, 1000), 10);
    assert.equal(drainSpreadSeconds(10_000_000), MAX_SPREAD_S);
    assert.equal(drainSpreadSeconds(Number.NaN), 1);
    assert.equal(drainSpreadSeconds(5000, 0), MAX_SPREAD_S, 'a rate of 0 is taken as 1/s');
  });

  it('gives each agent a whole second in [MIN_RETRY_AFTER_S, MIN_RETRY_AFTER_S + spread), uniformly', () => {
    const counts = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const s = drainRetryAfterSeconds(10, i / 1000);
      assert.ok(Number.isInteger(s) && s >= MIN_RETRY_AFTER_S && s < MIN_RETRY_AFTER_S + 10, String(s));
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    assert.deepEqual([...counts.values()], Array(10).fill(100));
    assert.equal(drainRetryAfterSeconds(1, 0.999), MIN_RETRY_AFTER_S);
    assert.equal(drainRetryAfterSeconds(3, 1), MIN_RETRY_AFTER_S + 2, 'random 1 stays inside the spread');
    assert.equal(drainRetryAfterSeconds(0, 0.5), MIN_RETRY_AFTER_S);
  });
});
