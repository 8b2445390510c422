/**
 * When a draining control plane asks its agents to come back, decided without I/O. On SIGTERM
 * every held poll is answered `503 draining` with a `Retry-After`; agents with one replica wait
 * that long (common/agent/retry.plan.ts adds up to a second, the header's granularity), agents
 * with several move to the next at once. Without a spread, a restarted control plane gets its
 * whole fleet back within one heartbeat interval (5 s), each agent a TLS handshake, a poll and a
 * full heartbeat: at 10,000 agents more than it can serve, and what times out is done again. With
 * it, the returns arrive at `returnRatePerSecond(held)` from MIN_RETRY_AFTER_S on.
 *
 * The rate: as slow as RETURN_RATE_PER_SECOND when that brings every agent back within
 * RETURN_WITHIN_S; faster for a larger fleet, just fast enough to fit RETURN_WITHIN_S; never above
 * MAX_RETURN_RATE_PER_SECOND, what a restarted control plane measured it can take here
 * (docs/performance.md, the restart storm, per returning agent). Above that the fleet's return
 * takes longer than RETURN_WITHIN_S rather than the server falling behind (timeouts, retries).
 */

/** The least rate a restarted control plane is asked to take (returning agents per second). */
export const RETURN_RATE_PER_SECOND = 500;
/**
 * The most: returning agents per second one core takes here with the agents already back
 * heartbeating (docs/performance.md, "The restart storm, per returning agent").
 */
export const MAX_RETURN_RATE_PER_SECOND = 1000;
/** Every agent asked back within this many seconds of the drain (issue 18: all polling ≤ 15 s after a restart). */
export const RETURN_WITHIN_S = 13;
/** The earliest Retry-After: about what a restart takes here (stopped and serving again in 2–4 s). */
export const MIN_RETRY_AFTER_S = 2;
/** The widest spread, whatever the count (agents accept at most 60 s: retry.plan.ts). */
export const MAX_SPREAD_S = 30;

/**
 * Returning agents per second for `held` agents: what brings them all back within
 * RETURN_WITHIN_S, at least RETURN_RATE_PER_SECOND, at most `max` (MAX_RETURN_RATE_PER_SECOND).
 */
export function returnRatePerSecond(held: number, max = MAX_RETURN_RATE_PER_SECOND): number {
  const ceiling = Math.max(1, Number.isFinite(max) ? max : MAX_RETURN_RATE_PER_SECOND);
  if (!Number.isFinite(held) || held <= 0) return Math.min(RETURN_RATE_PER_SECOND, ceiling);
  const needed = Math.ceil(held / (RETURN_WITHIN_S - MIN_RETRY_AFTER_S));
  return Math.min(ceiling, Math.max(RETURN_RATE_PER_SECOND, needed));
}

/** Over how many seconds `held` agents are asked to come back: at least 1, at most MAX_SPREAD_S. */
export function drainSpreadSeconds(held: number, ratePerSecond = returnRatePerSecond(held)): number {
  if (!Number.isFinite(held) || held <= 0) return 1;
  return Math.min(MAX_SPREAD_S, Math.max(1, Math.ceil(held / Math.max(1, ratePerSecond))));
}

/** One agent's Retry-After in whole seconds: MIN_RETRY_AFTER_S plus a uniform share of the spread (`random` in [0, 1)). */
export function drainRetryAfterSeconds(spreadSeconds: number, random: number): number {
  const r = Math.min(Math.max(random, 0), 0.999_999);
  return MIN_RETRY_AFTER_S + Math.floor(r * Math.max(1, Math.floor(spreadSeconds)));
}
