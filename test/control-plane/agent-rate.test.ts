/**
 * AgentRateLimiter.take with a second class (agent-rate.ts): a request that is two in one (a result
 * with `next` is a result and a poll) takes one of each, and a refusal on either takes neither.
 */
import assert from 'node:assert/strict';
import { AgentRateLimited, AgentRateLimiter, DEFAULT_AGENT_RATES } from '../../control-plane/http/agent-rate.ts';

describe('agent rate limiter: one request counted against two classes', () => {
  const now = 0;
  const limiter = () => new AgentRateLimiter({ ...DEFAULT_AGENT_RATES, poll: { perSecond: 1, burst: 2 }, result: { perSecond: 1, burst: 3 } }, { now: () => now });

  it('takes one of each class', () => {
    const l = limiter();
    l.take('a', 'result', 'poll');
    l.take('a', 'result', 'poll');
    assert.throws(() => l.take('a', 'poll'), AgentRateLimited, 'both polls were taken');
    l.take('a', 'result'); // the third result
    assert.throws(() => l.take('a', 'result'), AgentRateLimited);
  });

  it('refused on either class, takes from neither', () => {
    const l = limiter();
    l.take('a', 'poll');
    l.take('a', 'poll');
    assert.throws(() => l.take('a', 'result', 'poll'), (e: AgentRateLimited) => e.message.includes('poll'));
    // All three results are still there.
    l.take('a', 'result');
    l.take('a', 'result');
    l.take('a', 'result');
    assert.throws(() => l.take('a', 'result', 'heartbeat'), (e: AgentRateLimited) => e.message.includes('result'));
    // The heartbeat refused with it was not taken either: its whole burst is left.
    for (let i = 0; i < DEFAULT_AGENT_RATES.heartbeat.burst; i++) l.take('a', 'heartbeat');
    assert.throws(() => l.take('a', 'heartbeat'), AgentRateLimited);
  });

  it('the same class twice is one request', () => {
    const l = limiter();
    l.take('a', 'poll', 'poll');
    l.take('a', 'poll');
    assert.throws(() => l.take('a', 'poll'), AgentRateLimited);
  });
});
