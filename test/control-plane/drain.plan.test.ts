/** What a draining control plane asks its held agents (control-plane/queue/drain.plan.ts): pure, no I/O. */
import assert from 'node:assert/strict';
import { MAX_RETURN_RATE_PER_SECOND, MAX_SPREAD_S, MIN_RETRY_AFTER_S, RETURN_RATE_PER_SECOND, RETURN_WITHIN_S, drainRetryAfterSeconds, drainSpreadSeconds, returnRatePerSecond } from '../../control-plane/queue/drain.plan.ts';

describe('drain: when the held agents are asked to come back', () => {
  it('spreads the returns over held / rate seconds, at least 1, at most MAX_SPREAD_S', () => {
    assert.equal(drainSpreadSeconds(0), 1);
    assert.equal(drainSpreadSeconds(1), 1);
    assert.equal(drainSpreadSeconds(RETURN_RATE_PER_SECOND), 1);
    assert.equal(drainSpreadSeconds(RETURN_RATE_PER_SECOND + 1), 2);
    assert.equal(drainSpreadSeconds(10_000, 1000), 10);
    assert.equal(drainSpreadSeconds(5000, RETURN_RATE_PER_SECOND), 10);
    assert.equal(drainSpreadSeconds(10_000_000, RETURN_RATE_PER_SECOND), MAX_SPREAD_S);
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

  it('asks for the least rate while it brings everyone back within RETURN_WITHIN_S, faster for a larger fleet, never above the most', () => {
    assert.equal(returnRatePerSecond(0), RETURN_RATE_PER_SECOND);
    assert.equal(returnRatePerSecond(Number.NaN), RETURN_RATE_PER_SECOND);
    assert.equal(returnRatePerSecond(1), RETURN_RATE_PER_SECOND);
    assert.equal(returnRatePerSecond(5000), RETURN_RATE_PER_SECOND, '5,000 at 500/s: 10 s, inside the window');
    // 10,000 needs ⌈10,000 / 11⌉ = 910/s to be back 13 s after the drain (2 s + 11 s).
    assert.equal(returnRatePerSecond(10_000), Math.ceil(10_000 / (RETURN_WITHIN_S - MIN_RETRY_AFTER_S)));
    assert.ok(returnRatePerSecond(10_000) > RETURN_RATE_PER_SECOND && returnRatePerSecond(10_000) <= MAX_RETURN_RATE_PER_SECOND);
    assert.equal(returnRatePerSecond(1_000_000), MAX_RETURN_RATE_PER_SECOND, 'more than the server takes: slower, not faster');
    assert.equal(returnRatePerSecond(10_000, 700), 700, 'the most wins over the window');
    assert.equal(returnRatePerSecond(10_000, 0), 1, 'a ceiling of 0 is taken as 1/s');
  });

  it('brings 10,000 agents back within RETURN_WITHIN_S of the drain, the agents jitter of a second included', () => {
    // What the drain asks (the plan's default rate) and what the agents add (retry.plan.ts: < 1 s).
    const spread = drainSpreadSeconds(10_000);
    const last = drainRetryAfterSeconds(spread, 0.999_999) + 1;
    assert.ok(last <= RETURN_WITHIN_S, `the last agent is asked back after ${last} s (spread ${spread} s)`);
    // And the fleet is spread over the whole window, not bunched: every second from MIN_RETRY_AFTER_S on is used.
    const seconds = new Set(Array.from({ length: 10_000 }, (_, i) => drainRetryAfterSeconds(spread, i / 10_000)));
    assert.equal(seconds.size, RETURN_WITHIN_S - MIN_RETRY_AFTER_S);
    for (let k = 0; k < 10_000; k += 997) assert.ok(drainRetryAfterSeconds(spread, k / 10_000) >= MIN_RETRY_AFTER_S);
  });
});
