/** When an agent tries again (common/agent/retry.plan.ts): pure, no I/O. */
import assert from 'node:assert/strict';
import { MAX_RETRY_AFTER_MS, heartbeatDelay, parseRetryAfter, retryDelay } from '../../common/agent/retry.plan.ts';
import { toResponse, HttpError } from '../../common/http-client.ts';

const base = { attempt: 1, minBackoffMs: 1000, maxBackoffMs: 60_000 };

describe('agent retries: Retry-After and backoff', () => {
  it('reads Retry-After as delta-seconds or an HTTP-date, and nothing else', () => {
    const now = Date.parse('2026-12-01T00:00:00Z');
    assert.equal(parseRetryAfter('7', now), 7000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter(['3', '9'], now), 3000);
    assert.equal(parseRetryAfter('Tue, 01 Dec 2026 00:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Mon, 30 Nov 2026 23:00:00 GMT', now), 0, 'a date in the past: now');
    for (const bad of [undefined, '', '-1', '1.5', '1e3', 'soon', '12345678901', 'Xyz, garbage', 'Tue, '.padEnd(100, 'x')]) assert.equal(parseRetryAfter(bad, now), undefined, String(bad));
  });

  it('a 503 or 429 carries its Retry-After on the HttpError; other statuses do not', () => {
    const url = new URL('https://cp/v1/agent/poll');
    const thrown = (status: number, headers: Record<string, string>) => {
      try {
        toResponse('GET', url, { status, text: '{"error":{"code":"draining","message":"x"}}', headers }, {});
      } catch (err) {
        return err as HttpError;
      }
      throw new Error('no error');
    };
    assert.equal(thrown(503, { 'retry-after': '4' }).retryAfterMs, 4000);
    assert.equal(thrown(429, { 'retry-after': '2' }).retryAfterMs, 2000);
    assert.equal(thrown(503, {}).retryAfterMs, undefined);
    assert.equal(thrown(500, { 'retry-after': '4' }).retryAfterMs, undefined);
    assert.equal(thrown(401, { 'retry-after': '4' }).retryAfterMs, undefined);
  });

  it('waits what the control plane asked plus a jitter of at most a second, never less', () => {
    assert.deepEqual(retryDelay({ ...base, retryAfterMs: 5000, random: 0 }), { ms: 5000, cause: 'retry_after' });
    assert.deepEqual(retryDelay({ ...base, retryAfterMs: 5000, random: 0.5 }), { ms: 5500, cause: 'retry_after' });
    assert.deepEqual(retryDelay({ ...base, retryAfterMs: 0, random: 0.25 }), { ms: 250, cause: 'retry_after' });
    // Agents told the same second spread over the next: every value in [asked, asked + 1 s).
    const seen = Array.from({ length: 100 }, (_, i) => retryDelay({ ...base, retryAfterMs: 2000, random: i / 100 }).ms);
    assert.equal(Math.min(...seen), 2000);
    assert.equal(Math.max(...seen), 2990);
    // A long wait is not stretched by a fifth (the drain spreads its agents itself, drain.plan.ts):
    // told 12 s, the last agent comes back before 13 s, not at 14.4 s.
    assert.deepEqual(retryDelay({ ...base, retryAfterMs: 20_000, random: 0.5 }), { ms: 20_500, cause: 'retry_after' });
    assert.ok(retryDelay({ ...base, retryAfterMs: 12_000, random: 0.999 }).ms < 13_000);
    // Not a backoff: the attempt number does not grow it.
    assert.equal(retryDelay({ ...base, attempt: 9, retryAfterMs: 3000, random: 0 }).ms, 3000);
  });

  it('bounds the wait whatever the header says', () => {
    for (const asked of [59_000, 60_000, 3_600_000, Number.MAX_SAFE_INTEGER]) {
      for (const random of [0, 0.999]) {
        const d = retryDelay({ ...base, retryAfterMs: asked, random });
        assert.equal(d.cause, 'retry_after');
        assert.ok(d.ms <= MAX_RETRY_AFTER_MS && d.ms >= Math.min(asked, MAX_RETRY_AFTER_MS), `${asked} ${random} → ${d.ms}`);
      }
    }
    // Not a number the agent can wait: its own backoff instead.
    assert.equal(retryDelay({ ...base, retryAfterMs: Number.NaN, random: 0 }).cause, 'backoff');
    assert.equal(retryDelay({ ...base, retryAfterMs: -1, random: 0 }).cause, 'backoff');
  });

  it('without a Retry-After: min doubling per attempt up to max, randomised ×1–2', () => {
    assert.deepEqual(retryDelay({ ...base, random: 0 }), { ms: 1000, cause: 'backoff' });
    assert.equal(retryDelay({ ...base, attempt: 2, random: 0.5 }).ms, 3000);
    assert.equal(retryDelay({ ...base, attempt: 4, random: 0 }).ms, 8000);
    assert.equal(retryDelay({ ...base, attempt: 7, random: 0.9 }).ms, 60_000);
    assert.equal(retryDelay({ ...base, attempt: 5000, random: 0.9 }).ms, 60_000);
  });

  it('heartbeats: the usual pace after one failure, then the interval doubling per failure, ×1–2, up to the cap', () => {
    const hb = { intervalMs: 5000, maxBackoffMs: 60_000 };
    assert.equal(heartbeatDelay({ ...hb, failures: 0, random: 0.9 }), 0);
    assert.equal(heartbeatDelay({ ...hb, failures: 1, random: 0.9 }), 0, 'one failure: the next tick, as usual');
    assert.equal(heartbeatDelay({ ...hb, failures: 2, random: 0 }), 5000);
    assert.equal(heartbeatDelay({ ...hb, failures: 2, random: 0.5 }), 7500);
    assert.equal(heartbeatDelay({ ...hb, failures: 3, random: 0 }), 10_000);
    assert.equal(heartbeatDelay({ ...hb, failures: 4, random: 0.999 }), 39_980);
    assert.equal(heartbeatDelay({ ...hb, failures: 5, random: 0 }), 40_000);
    assert.equal(heartbeatDelay({ ...hb, failures: 5, random: 0.9 }), 60_000);
    assert.equal(heartbeatDelay({ ...hb, failures: 1e9, random: 0.9 }), 60_000, 'never more than the cap, whatever the count');
    // A fleet does not come back in step: the waits after the same failures spread over [d, 2d).
    const seen = new Set(Array.from({ length: 100 }, (_, i) => heartbeatDelay({ ...hb, failures: 3, random: i / 100 })));
    assert.equal(seen.size, 100);
  });
});
