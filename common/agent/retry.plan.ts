/**
 * How long an agent waits before its next attempt, decided without I/O. Two cases:
 *
 * - The control plane said when to come back: a `Retry-After` on a 503 or 429 (a draining
 *   control plane spreads its agents' returns this way, so that after a restart they arrive over a
 *   few seconds instead of all at once). The agent waits that long plus a jitter of up to a second
 *   (Retry-After has whole seconds: agents told the same second spread over the next one instead of
 *   coming back in step), bounded by {@link MAX_RETRY_AFTER_MS} whatever the header says. Not more:
 *   the control plane spreads its agents itself (control-plane/queue/drain.plan.ts), and a jitter
 *   growing with the wait (a fifth of it, before) put the last of a 10,000-agent drain's returns
 *   2.4 s after the time it planned for them.
 * - Otherwise its own backoff: `min` doubling per failed attempt up to `max`, each randomised by
 *   ×1–2 (p-retry's formula), so a fleet does not retry in step.
 *
 * Heartbeats back off too ({@link heartbeatDelay}), from the heartbeat interval: a heartbeat is
 * what reconnects an agent, and without it a fleet that could not get through dialled again every
 * 5 s, each dial a TLS handshake for a control plane that may already be behind
 * (docs/performance.md, "Heartbeats back off").
 */

/** The longest wait an agent accepts from a Retry-After: a control plane cannot park its agents for longer. */
export const MAX_RETRY_AFTER_MS = 60_000;
/** Added to a Retry-After, times a random number in [0, 1): the header's granularity. */
export const RETRY_AFTER_JITTER_MS = 1000;

/**
 * A `Retry-After` value in milliseconds: delta-seconds (`120`) or an HTTP-date (RFC 9110 §10.2.3),
 * relative to `now`. Undefined when absent or not one of the two; a date in the past is 0.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^[0-9]{1,9}$/.test(v)) return Number(v) * 1000;
  // An HTTP-date names its weekday ("Sun, 06 Nov 1994 08:49:37 GMT"); a bare number above is not one.
  if (v.length > 64 || !/^[A-Za-z]{3},? /.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface RetryInput {
  /** The failed attempt's number, from 1. */
  attempt: number;
  /** What the control plane asked for (parseRetryAfter), when it did. */
  retryAfterMs?: number | undefined;
  minBackoffMs: number;
  maxBackoffMs: number;
  /** A number in [0, 1) (Math.random() in use; fixed in tests). */
  random: number;
}

export type RetryDelay = { ms: number; cause: 'retry_after' | 'backoff' };

/** The wait before the next attempt, and whether it is the control plane's or the agent's own. */
export function retryDelay(i: RetryInput): RetryDelay {
  if (i.retryAfterMs !== undefined && Number.isFinite(i.retryAfterMs) && i.retryAfterMs >= 0) {
    const asked = Math.min(MAX_RETRY_AFTER_MS, i.retryAfterMs);
    const jitter = RETRY_AFTER_JITTER_MS * i.random;
    return { ms: Math.round(Math.min(MAX_RETRY_AFTER_MS, asked + jitter)), cause: 'retry_after' };
  }
  const ms = Math.min(i.maxBackoffMs, Math.round((1 + i.random) * i.minBackoffMs * 2 ** (Math.max(1, i.attempt) - 1)));
  return { ms, cause: 'backoff' };
}

export interface HeartbeatDelayInput {
  /** Heartbeats failed in a row without a Retry-After, this one included (from 1). */
  failures: number;
  intervalMs: number;
  maxBackoffMs: number;
  /** A number in [0, 1) (Math.random() in use; fixed in tests). */
  random: number;
}

/**
 * How long after a failed heartbeat the next one may go (0: at the interval's next tick, as usual).
 * One failure changes nothing; from the second in a row the interval doubles per failure, ×1–2,
 * up to `maxBackoffMs`: with 5 s heartbeats and the 60 s cap 5–10, 10–20, 20–40, then 40–60 s. A
 * control plane back after a restart of a few seconds sees its agents at the usual pace; one that
 * stayed unreachable sees each agent at most every 40–60 s. The interval's timer still ticks, so
 * the heartbeat goes at the first tick after the wait (up to one interval later).
 */
export function heartbeatDelay(i: HeartbeatDelayInput): number {
  if (i.failures < 2) return 0;
  return Math.min(i.maxBackoffMs, Math.round((1 + i.random) * i.intervalMs * 2 ** Math.min(30, i.failures - 2)));
}
