/**
 * Scheduled drift checks and autoSync (issue 13, part B), the thin part: a loop that never dies
 * (a failed tick is logged under `err`, the next one goes on), stopped cleanly on shutdown. Each
 * tick reads the instances that are due or not placed yet, lets drift.plan.ts decide, stores the
 * next due times and submits the checks (BundlesService.diff). A diff job's result is recorded
 * the moment it ends (the queue's 'ended' event), or by the tick's sweep if that was missed (a
 * restart), or when the instance is read, whichever comes first, and exactly once: that one
 * counts it in /metrics and, with autoSync on, submits BundlesService.sync().
 */
import { randomInt } from 'node:crypto';
import type { Clock } from '../../common/clock.ts';
import type { Logger } from '../../common/logger.ts';
import { isTerminal, type CommandView } from '../../common/wire.ts';
import type { Db } from '../db/database.ts';
import * as repo from '../db/drift.repository.ts';
import type { Metrics } from '../metrics.ts';
import type { CommandEnded, QueueService } from '../queue/queue.service.ts';
import type { BundlesService } from './bundles.service.ts';
import { syncStatusOf } from './compile.ts';
import { decideAutoSync, planTick, type CheckResult, type DriftSettings } from './drift.plan.ts';
import { flowPrunes, prunedResources } from './prune.plan.ts';
import { liveVersions } from './prune.ts';
import { getInstance } from '../db/bundles.repository.ts';
import { getCluster } from '../db/accounts.repository.ts';

export interface DriftSchedulerOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  queue: QueueService;
  bundles: BundlesService;
  metrics: Metrics;
  settings: DriftSettings;
  /** Time between ticks (real time; the decisions use `clock`). */
  tickMs?: number;
  /** Uniform in [0, 1): the jitter's source (tests inject a sequence). */
  random?: () => number;
}

/** Instances read per tick beyond the cap (busy ones are passed over); ended checks swept per tick. */
const SCAN_FACTOR = 4;
const SWEEP_LIMIT = 500;

export class DriftScheduler {
  private readonly o: Required<DriftSchedulerOptions>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private started = false;
  private readonly pending = new Set<Promise<void>>();
  private readonly onEnded = (e: CommandEnded) => this.track(this.jobEnded(e));

  constructor(o: DriftSchedulerOptions) {
    this.o = { tickMs: 5000, random: () => randomInt(0, 2 ** 32) / 2 ** 32, ...o };
    this.log = o.log.child({ component: 'drift' });
    o.queue.events.on('ended', this.onEnded);
  }

  /** Ticks every tickMs from now on (the first one soon after start). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    const loop = () => {
      this.tick()
        .catch((err: unknown) => this.log.error({ err }, 'drift check tick failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.o.tickMs).unref();
        });
    };
    this.timer = setTimeout(loop, Math.min(1000, this.o.tickMs)).unref();
  }

  /** Stops the loop and the hook, and waits for a tick and any recording in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.o.queue.events.off('ended', this.onEnded);
    await this.running?.catch(() => undefined);
    await Promise.allSettled([...this.pending]);
  }

  /** One tick (concurrent calls share it): ended checks recorded, due checks submitted. */
  tick(): Promise<void> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Waits for the recordings (and autoSyncs) started by ended jobs so far (tests). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }

  private async run(): Promise<void> {
    const { db, clock, settings, bundles } = this.o;
    // The safety net: checks that ended while nobody listened (before a restart).
    for (const r of await repo.endedUnrecordedChecks(db, SWEEP_LIMIT)) {
      if (this.stopped) return;
      await this.record(r.aid, r.osid, r.sync_job_id).catch((err: unknown) => this.log.error({ err, osid: r.osid, jobId: r.sync_job_id }, 'drift check result not recorded'));
    }
    await repo.clearStaleNextChecks(db, settings.defaultIntervalSeconds);
    const now = clock.now();
    const rows = await repo.dueInstances(db, now, settings.defaultIntervalSeconds, Math.max(1, settings.checksPerTick) * SCAN_FACTOR);
    const plan = planTick(
      rows.map((r) => ({
        aid: r.aid,
        osid: r.osid,
        driftIntervalSeconds: r.drift_interval_seconds,
        nextCheckAt: r.next_check_at,
        deleted: r.last_action === 'delete',
        busy: r.last_job_state !== null && !isTerminal(r.last_job_state),
        checking: r.sync_job_id !== null && r.sync_job_state !== null && !isTerminal(r.sync_job_state),
      })),
      now,
      settings,
      this.o.random,
    );
    // Due times first: a check whose submission fails is not retried every tick. A check is taken
    // by compare-and-set on the due time read, so that of replicas ticking at once one submits it.
    await repo.setNextChecks(db, plan.reschedule);
    const dueAt = new Map(rows.map((r) => [`${r.aid}/${r.osid}`, r.next_check_at]));
    let submitted = 0;
    for (const c of plan.check) {
      if (this.stopped) break;
      try {
        if (!(await repo.takeDueCheck(db, c.aid, c.osid, dueAt.get(`${c.aid}/${c.osid}`) ?? null, c.nextCheckAt))) continue; // another replica took it
        const { jobId } = await bundles.diff(c.aid, c.osid);
        submitted++;
        this.log.debug({ aid: c.aid, osid: c.osid, jobId, nextCheckAt: new Date(c.nextCheckAt).toISOString() }, 'scheduled drift check submitted');
      } catch (err) {
        this.log.warn({ err, aid: c.aid, osid: c.osid }, 'scheduled drift check not submitted');
      }
    }
    if (submitted || plan.deferred) this.log.info({ submitted, deferred: plan.deferred, skipped: plan.skipped.length }, 'scheduled drift checks submitted');
  }

  private track(p: Promise<void>): void {
    const t = p.catch((err: unknown) => this.log.error({ err }, 'drift check result not recorded')).finally(() => this.pending.delete(t));
    this.pending.add(t);
  }

  /**
   * The queue's hook: a job ended; when it is an instance's last diff job, its result is recorded;
   * when it is its last apply flow and that flow pruned, the instance is synced (it succeeded) or
   * unknown (it did not).
   */
  private async jobEnded(e: CommandEnded): Promise<void> {
    // An instance's jobs (deploys, diffs, syncs, destroys) are flows: any other command that ended
    // is none of them, without the two index probes (most of the queue's commands, at its rate).
    if (e.type !== 'flow') return;
    const applied = await repo.instanceOfEndedJob(this.o.db, e.aid, e.id);
    if (!applied) return;
    if (applied.kind === 'check') return this.record(e.aid, applied.osid, e.id);
    const job = await this.o.queue.get(e.aid, e.id).catch(() => undefined);
    if (!job || !isTerminal(job.state) || !flowPrunes(job.spec)) return;
    const at = job.finishedAt ? Date.parse(job.finishedAt) : this.o.clock.now();
    await repo.recordPruningApply(this.o.db, e.aid, applied.osid, { jobId: e.id, succeeded: job.state === 'succeeded', at });
    this.log.info({ aid: e.aid, osid: applied.osid, jobId: e.id, syncStatus: job.state === 'succeeded' ? 'synced' : 'unknown' }, 'pruning apply ended');
  }

  private async record(aid: string, osid: string, jobId: number): Promise<void> {
    const job = await this.o.queue.get(aid, jobId).catch(() => undefined);
    if (!job || !isTerminal(job.state)) return;
    await recordEndedCheck(this.o.db, this.o.clock, aid, osid, job, (r) => this.recorded(r));
  }

  /**
   * A check's result was recorded (by whichever path came first): counted once, and acted on by
   * autoSync. Also called by BundlesService when a read of the instance recorded it.
   */
  async recorded(r: { aid: string; osid: string; jobId: number; status: CheckResult }): Promise<void> {
    const { db, clock, bundles, metrics } = this.o;
    metrics.driftChecks.inc({ result: r.status });
    this.log.info({ aid: r.aid, osid: r.osid, jobId: r.jobId, syncStatus: r.status }, 'drift check ended');
    const a = await repo.getAutoSync(db, r.aid, r.osid);
    if (!a) return;
    const now = clock.now();
    const d = decideAutoSync({ autoSync: a.auto_sync === 1, lastJobId: a.auto_sync_job_id, lastAt: a.auto_sync_at, failures: a.auto_sync_failures }, r.status, now);
    switch (d.outcome) {
      case 'none':
        return;
      case 'reset':
        await repo.resetAutoSync(db, r.aid, r.osid);
        return;
      case 'backoff':
        this.log.info({ aid: r.aid, osid: r.osid, checkJobId: r.jobId, failures: d.failures, notBefore: new Date(d.notBefore).toISOString() }, 'autoSync backing off: earlier syncs did not repair the drift');
        return;
      case 'sync':
        try {
          const { jobId } = await bundles.sync(r.aid, r.osid);
          await repo.recordAutoSync(db, r.aid, r.osid, { jobId, at: now, failures: d.failures });
          metrics.autoSyncs.inc();
          this.log.info({ aid: r.aid, osid: r.osid, checkJobId: r.jobId, syncJobId: jobId, failures: d.failures }, 'autoSync: drift found, sync submitted');
        } catch (err) {
          this.log.warn({ err, aid: r.aid, osid: r.osid, checkJobId: r.jobId }, 'autoSync: sync not submitted');
        }
        return;
    }
  }
}

/**
 * Records an ended diff job's result on its instance, once; `then` runs only for the caller that
 * recorded it. Returns the status (recorded now or already).
 */
export async function recordEndedCheck(
  db: Db,
  clock: Clock,
  aid: string,
  osid: string,
  job: Pick<CommandView, 'id' | 'state' | 'outputs' | 'finishedAt'>,
  then?: (r: { aid: string; osid: string; jobId: number; status: CheckResult }) => Promise<void>,
): Promise<{ status: CheckResult; checkedAt: number; recorded: boolean }> {
  // Resources an earlier version had that a sync would still remove (a pruning apply that did
  // not succeed) are drift, as `tether diff` shows them, though every step compared in sync.
  const status = syncStatusOf(job) === 'synced' && (await prunePending(db, aid, osid)) ? 'drifted' : syncStatusOf(job);
  const checkedAt = job.finishedAt ? Date.parse(job.finishedAt) : clock.now();
  const recorded = await repo.recordCheckOnce(db, aid, osid, { jobId: job.id, status, checkedAt });
  if (recorded && then) await then({ aid, osid, jobId: job.id, status });
  return { status, checkedAt, recorded };
}

/** Whether the instance's desired state would still remove resources of the versions that may be in the cluster. */
async function prunePending(db: Db, aid: string, osid: string): Promise<boolean> {
  const row = await getInstance(db, aid, osid);
  const cluster = row && (await getCluster(db, aid, row.cid));
  if (!row || !cluster) return false;
  const live = await liveVersions(db, row, cluster.domain);
  return prunedResources(live.map((v) => v.state.bundle), JSON.parse(row.bundle) as Parameters<typeof prunedResources>[1]).length > 0;
}
