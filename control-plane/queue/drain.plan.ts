/**
 * When a draining control plane asks its agents to come back, decided without I/O. On SIGTERM
 * every held poll is answered `503 draining` with a `Retry-After`; agents with one replica wait
 * that long (common/agent/retry.plan.ts adds their own jitter), agents with several move to the
 * next at once. Without a spread, a restarted control plane gets its whole fleet back within one
 * heartbeat interval (5 s), each agent a TLS handshake, a poll and a full heartbeat: at 10,000
 * agents more than it can serve, and what times out is done again. With it, the returns arrive
 * over `held / RETURN_RATE` seconds, starting after the time a restart takes.
 */

/** Returning agents per second a restarted control plane is asked to take (docs/performance.md, the restart storm). */
export const RETURN_RATE_PER_SECOND = 500;
/** The earliest Retry-After: about what a restart takes here (stopped and serving again in 2–4 s). */
export const MIN_RETRY_AFTER_S = 2;
/** The widest spread, whatever the count (agents accept at most 60 s: retry.plan.ts). */
export const MAX_SPREAD_S = 30;

/** Over how many seconds `held` agents are asked to come back: at least 1. */
export function drainSpreadSeconds(held: number, ratePerSecond = RETURN_RATE_PER_SECOND): number {
  if (!Number.isFinite(held) || held <= 0) return 1;
  return Math.min(MAX_SPREAD_S, Math.max(1, Math.ceil(held / Math.max(1, ratePerSecond))));
}

/** One agent's Retry-After in whole seconds: MIN_RETRY_AFTER_S plus a uniform share of the spread (`random` in [0, 1)). */
export function drainRetryAfterSeconds(spreadSeconds: number, random: number): number {
  const r = Math.min(Math.max(random, 0), 0.999_999);
  return MIN_RETRY_AFTER_S + Math.floor(r * Math.max(1, Math.floor(spreadSeconds)));
}
