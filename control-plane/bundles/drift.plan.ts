/**
 * Scheduled drift checks and autoSync, the decisions (issue 13, part B): given instances, the
 * time and the settings, which instances to check now and when each is due next; whether an
 * ended check submits a sync. Pure: no clock, no randomness of its own (both are parameters), no
 * I/O. drift.scheduler.ts acts on what is decided here.
 */

/** An instance's drift check setting: its own interval, or off. */
export type DriftCheckSetting = { intervalSeconds: number } | 'off';

/** The bounds of a per-instance interval (PATCH /v1/instances/{osid}). */
export const DRIFT_INTERVAL_MIN_S = 60;
export const DRIFT_INTERVAL_MAX_S = 86_400;
/** Each next check lands within ± this fraction of the interval. */
export const DRIFT_JITTER = 0.2;
/** A check skipped because the instance was busy is tried again this soon (at most one interval). */
export const BUSY_RETRY_S = 60;

export interface DriftSettings {
  /** The server's interval for instances without their own; 0: off (`--drift-interval off`). */
  defaultIntervalSeconds: number;
  /** The most checks one tick submits. */
  checksPerTick: number;
}

/** One instance as the scheduler sees it. */
export interface DriftCandidate {
  aid: string;
  osid: string;
  /** NULL: the server's interval; 0: off. */
  driftIntervalSeconds: number | null;
  nextCheckAt: number | null;
  deleted: boolean;
  /** Its last job (deploy, upgrade, sync, delete) has not ended. */
  busy: boolean;
  /** A diff job of it has not ended (a scheduled or a manual check). */
  checking: boolean;
}

export interface DriftTickPlan {
  /** Instances to check now (most overdue first), at most checksPerTick, with their next due time. */
  check: { aid: string; osid: string; nextCheckAt: number }[];
  /** Instances whose next due time changes without a check now (placed, retried, over the cap: unchanged). */
  reschedule: { aid: string; osid: string; nextCheckAt: number | null }[];
  /** Due, but skipped this tick: busy (a job running) or already being checked. */
  skipped: { osid: string; reason: 'busy' | 'checking' }[];
  /** Due and idle but left for a later tick by the per-tick cap. */
  deferred: number;
}

/** The interval in force for an instance (seconds), or undefined: off. */
export function effectiveInterval(own: number | null, defaultIntervalSeconds: number): number | undefined {
  const s = own ?? defaultIntervalSeconds;
  return s > 0 ? s : undefined;
}

/** What an instance shows: its setting in force. */
export function driftCheckOf(own: number | null, defaultIntervalSeconds: number): DriftCheckSetting {
  const s = effectiveInterval(own, defaultIntervalSeconds);
  return s === undefined ? 'off' : { intervalSeconds: s };
}

/** The stored form of a setting: 0 for off. */
export function storedInterval(s: DriftCheckSetting): number {
  return s === 'off' ? 0 : s.intervalSeconds;
}

/** The next check after one now: one interval ± DRIFT_JITTER, `u` uniform in [0, 1). */
export function nextAfterCheck(now: number, intervalSeconds: number, u: number): number {
  return now + Math.round(intervalSeconds * 1000 * (1 - DRIFT_JITTER + 2 * DRIFT_JITTER * u));
}

/**
 * The first check of an instance not placed yet (new, its setting changed, or the server's
 * interval turned on): anywhere within one interval, so that many instances placed in the same
 * tick (a restart, 200 deployed at once) spread over the interval instead of firing together.
 */
export function firstCheck(now: number, intervalSeconds: number, u: number): number {
  return now + Math.round(intervalSeconds * 1000 * u);
}

/**
 * One tick. `random` gives uniform numbers in [0, 1) (injected: tests pass a fixed sequence).
 * Off and deleted instances get no due time; an instance not placed yet is placed; a due
 * instance is checked unless a job of it runs (tried again BUSY_RETRY_S later), most overdue
 * first, at most `checksPerTick`; the rest stay due for the next tick.
 */
export function planTick(instances: readonly DriftCandidate[], now: number, settings: DriftSettings, random: () => number): DriftTickPlan {
  const plan: DriftTickPlan = { check: [], reschedule: [], skipped: [], deferred: 0 };
  const due: { c: DriftCandidate; interval: number }[] = [];
  for (const c of instances) {
    const interval = effectiveInterval(c.driftIntervalSeconds, settings.defaultIntervalSeconds);
    if (c.deleted || interval === undefined) {
      if (c.nextCheckAt !== null) plan.reschedule.push({ aid: c.aid, osid: c.osid, nextCheckAt: null });
      continue;
    }
    if (c.nextCheckAt === null) {
      plan.reschedule.push({ aid: c.aid, osid: c.osid, nextCheckAt: firstCheck(now, interval, random()) });
      continue;
    }
    if (c.nextCheckAt > now) continue;
    if (c.busy || c.checking) {
      plan.skipped.push({ osid: c.osid, reason: c.busy ? 'busy' : 'checking' });
      plan.reschedule.push({ aid: c.aid, osid: c.osid, nextCheckAt: now + Math.min(BUSY_RETRY_S, interval) * 1000 });
      continue;
    }
    due.push({ c, interval });
  }
  due.sort((a, b) => a.c.nextCheckAt! - b.c.nextCheckAt! || (a.c.osid < b.c.osid ? -1 : a.c.osid > b.c.osid ? 1 : 0));
  const cap = Math.max(0, settings.checksPerTick);
  for (const { c, interval } of due.slice(0, cap)) plan.check.push({ aid: c.aid, osid: c.osid, nextCheckAt: nextAfterCheck(now, interval, random()) });
  plan.deferred = Math.max(0, due.length - cap);
  return plan;
}

// ------------------------------------------------------------------ autoSync

/** AutoSync's backoff: after n autoSyncs in a row that a later check still found drifted, the next waits base·2^(n−1), at most max. */
export const AUTO_SYNC_BACKOFF_BASE_S = 300;
export const AUTO_SYNC_BACKOFF_MAX_S = 6 * 3600;

export interface AutoSyncState {
  autoSync: boolean;
  /** The last sync autoSync submitted (NULL: none since the last synced check). */
  lastJobId: number | null;
  lastAt: number | null;
  failures: number;
}

export type CheckResult = 'synced' | 'drifted' | 'error';

export type AutoSyncDecision =
  | { outcome: 'sync'; failures: number }
  | { outcome: 'backoff'; failures: number; notBefore: number }
  | { outcome: 'reset' }
  | { outcome: 'none' };

export function autoSyncBackoffSeconds(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(AUTO_SYNC_BACKOFF_MAX_S, AUTO_SYNC_BACKOFF_BASE_S * 2 ** Math.min(failures - 1, 30));
}

/**
 * What an ended check (recorded once) makes autoSync do. synced: the failures are forgotten
 * (reset, when there were any). error: nothing (the check itself failed; a sync would be blind).
 * drifted, autoSync on: a sync, unless the last autoSync was followed by this drift too (it did
 * not repair it: failures + 1) and its backoff has not run out. The sync engine refuses while a
 * job runs; the scheduler never checks a busy instance, so a drifted check never meets a sync of
 * its own still running.
 */
export function decideAutoSync(s: AutoSyncState, result: CheckResult, now: number): AutoSyncDecision {
  if (result === 'synced') return s.failures > 0 || s.lastJobId !== null ? { outcome: 'reset' } : { outcome: 'none' };
  if (result === 'error' || !s.autoSync) return { outcome: 'none' };
  const failures = s.lastJobId !== null ? s.failures + 1 : s.failures;
  const wait = autoSyncBackoffSeconds(failures) * 1000;
  if (s.lastAt !== null && wait > 0 && now < s.lastAt + wait) return { outcome: 'backoff', failures, notBefore: s.lastAt + wait };
  return { outcome: 'sync', failures };
}

// ------------------------------------------------------------------ the instance view

/** What an instance shows of its schedule: the setting in force, autoSync, the next check. */
export function driftView(
  row: { drift_interval_seconds: number | null; auto_sync: number; next_check_at: number | null; last_action: 'apply' | 'delete' },
  defaultIntervalSeconds: number,
): { driftCheck: DriftCheckSetting; autoSync: boolean; nextCheckAt: string | null } {
  const driftCheck = driftCheckOf(row.drift_interval_seconds, defaultIntervalSeconds);
  const next = driftCheck === 'off' || row.last_action === 'delete' ? null : row.next_check_at;
  return { driftCheck, autoSync: row.auto_sync === 1, nextCheckAt: next === null ? null : new Date(next).toISOString() };
}

/**
 * `--drift-interval 10m|off` (tether server, tether instances set): a duration of 60 s to one day,
 * or off. Returns the setting, or the message of why not.
 */
export function parseDriftInterval(v: string): DriftCheckSetting | { error: string } {
  if (v === 'off') return 'off';
  const m = /^(\d{1,6})(s|m|h|d)$/.exec(v);
  const seconds = m ? Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'] : NaN;
  if (!(seconds >= DRIFT_INTERVAL_MIN_S && seconds <= DRIFT_INTERVAL_MAX_S)) return { error: `--drift-interval must be off or a duration from 60s to 1d, like 10m (got ${v})` };
  return { intervalSeconds: seconds };
}
