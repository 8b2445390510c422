/**
 * Bundle sources and instances: register a git source, deploy it to a cluster (pin the commit,
 * validate, compile to a flow, queue it), upgrade in place, roll back to an earlier version,
 * delete in reverse order, and show an instance with its state and outputs (taken from its last
 * succeeded apply job) and its desired state's versions. SQL stays in ../db; the decisions are in
 * compile.ts and validate.ts.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { z } from 'zod';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { TetherError, badRequest, conflict, notFound } from '../../common/errors.ts';
import { iso, type Clock } from '../../common/clock.ts';
import { isTerminal, type CommandView } from '../../common/wire.ts';
import type { Logger } from '../../common/logger.ts';
import type { Db } from '../db/database.ts';
import { getCluster } from '../db/accounts.repository.ts';
import * as repo from '../db/bundles.repository.ts';
import type { InstanceRow, InstanceVersionWithJob } from '../db/bundles.repository.ts';
import type { QueueService } from '../queue/queue.service.ts';
import { decodeCursor, page } from '../pagination.ts';
import { bundleType, type Bundle } from './bundle.schema.ts';
import { validateBundleDir } from './bundle-fs.ts';
import { diffWithPruning, prunedResources, type DesiredState } from './prune.plan.ts';
import { appliedBefore, applyFlowWithPruning, liveVersions } from './prune.ts';
import { oldAgentVersion, pruneOmittedLine, withoutManifestPrune } from './agent-compat.plan.ts';
import { clusterAgentVersions } from '../db/agents.repository.ts';
import { appendLogs } from '../db/logs.repository.ts';
import { resolveDesiredState, type ResolvedState } from './desired-state.ts';
import type { FlowSpec } from '../../common/specs.ts';
import { compileBundle, compileDiff, hostOf, instanceOutputs, namespaceOf, newOsid, portHostOf, resolveInputs, type InstanceContext, type InstanceOutputs } from './compile.ts';
import type { GitCache } from './git-cache.ts';
import { updateDriftSettings } from '../db/drift.repository.ts';
import { driftView, storedInterval } from './drift.plan.ts';
import { recordEndedCheck } from './drift.scheduler.ts';
import { formatProblems } from './validate.ts';
import type { BundleSourceView, DeployRequest, DeployResponse, DesiredStateRequest, DiffResponse, InstanceState, InstanceVersionView, InstanceView, RedeployRequest, RegisterBundleRequest } from './bundles.wire.ts';
import type { BundleInfo, DriftSettingsRequest } from './bundles.wire.ts';

export interface BundlesDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  queue: QueueService;
  cache: GitCache;
  /** Cache entries unused this long are collected (collectCache). */
  cacheIdleMs?: number;
  /** The server's drift check interval (`--drift-interval`; 0 off), shown for instances without their own. */
  driftIntervalSeconds?: number;
  /** A read of an instance recorded its ended diff job's result (first): counted and acted on (drift.scheduler.ts). */
  onCheckRecorded?: (r: { aid: string; osid: string; jobId: number; status: 'synced' | 'drifted' | 'error' }) => Promise<void>;
}

/** A validated bundle at a pinned commit. */
interface LoadedBundle {
  bundle: Bundle;
  commit: string;
}

export class BundlesService {
  private readonly d: BundlesDeps;
  /** Manual checks of an instance's own desired state, one at a time per instance (in this process). */
  private readonly checking = new Map<string, Promise<unknown>>();
  constructor(deps: BundlesDeps) {
    this.d = deps;
  }

  // ------------------------------------------------------------------ sources

  /**
   * Registers or replaces a source. The ref must resolve now, with the given credentials, under
   * the fetch policy; otherwise nothing changes (a source of the same name stays as it was). The
   * commit is pinned again at every deployment.
   */
  async registerSource(aid: string, req: RegisterBundleRequest): Promise<{ source: BundleSourceView; created: boolean; commit: string }> {
    const { username, password, ...s } = req;
    const credentials = username !== undefined && password !== undefined ? { username, password } : undefined;
    const commit = await this.d.cache.resolve(aid, { url: s.url, ref: s.ref, ...(credentials ? { credentials } : {}) });
    // What the source holds there (the console's deploy form reads it): a bundle that does not
    // validate is still registered, with the reason, as before.
    const at = await this.loadAt(aid, { url: s.url, path: s.path }, commit, s.ref).then(
      ({ bundle }) => ({ commit, info: JSON.stringify(bundleInfo(bundle)), error: null }),
      (err: unknown) => {
        // Registration stands on the ref resolving (as before); what cannot be read there is kept as the reason.
        if (!(err instanceof TetherError)) this.d.log.warn({ aid, name: s.name, commit, err }, 'bundle at the registered commit could not be read');
        return { commit, info: null, error: err instanceof TetherError ? err.message.slice(0, MAX_BUNDLE_ERROR) : 'the bundle at this commit could not be read' };
      },
    );
    const created = await repo.upsertBundleSource(this.d.db, { aid, ...s, ...(credentials ? { credentials } : {}), at, now: this.d.clock.now() });
    this.d.log.info({ aid, name: s.name, commit }, created ? 'bundle source registered' : 'bundle source updated');
    return { source: await this.getSource(aid, s.name), created, commit };
  }

  async getSource(aid: string, name: string): Promise<BundleSourceView> {
    const row = await repo.getBundleSource(this.d.db, aid, name);
    if (!row) throw notFound(`bundle ${name} is not registered`, 'bundle_not_found');
    return sourceView(row);
  }

  async listSources(aid: string): Promise<BundleSourceView[]> {
    return (await repo.listBundleSources(this.d.db, aid)).map(sourceView);
  }

  /**
   * Deletes a source and its credentials; its mirror is collected by the next collection (now, in
   * the background). Instances deployed from it keep running and can still be deleted (they hold
   * the bundle they were compiled from); upgrading them needs the source registered again.
   */
  async deleteSource(aid: string, name: string): Promise<void> {
    if (!(await repo.deleteBundleSource(this.d.db, aid, name))) throw notFound(`bundle ${name} is not registered`, 'bundle_not_found');
    this.d.log.info({ aid, name }, 'bundle source deleted');
    void this.collectCache().catch((err: unknown) => this.d.log.error({ err }, 'bundle cache collection failed'));
  }

  /** Mirrors of sources no longer registered, and cache entries unused for long, are removed. */
  async collectCache(): Promise<number> {
    const keep = (await repo.listSourceUrls(this.d.db)).map((r) => ({ account: r.aid, url: r.url }));
    const { removed } = await this.d.cache.collect(keep, this.d.cacheIdleMs ?? 14 * 86_400_000);
    if (removed.length) this.d.log.info({ removed: removed.length }, 'bundle cache collected');
    return removed.length;
  }

  /** Pins the source's ref to a commit, checks the tree out (cached) and validates the bundle there. */
  private async load(aid: string, src: repo.BundleSourceRow, ref = src.ref): Promise<LoadedBundle> {
    const credentials = src.git_username !== null && src.git_password !== null ? { username: src.git_username, password: src.git_password } : undefined;
    const commit = await this.d.cache.resolve(aid, { url: src.url, ref, ...(credentials ? { credentials } : {}) });
    return this.loadAt(aid, src, commit, ref);
  }

  /** Checks the tree at a resolved commit out (cached) and validates the bundle there. */
  private async loadAt(aid: string, src: { url: string; path: string }, commit: string, ref: string): Promise<LoadedBundle> {
    const tree = await this.d.cache.tree(aid, src.url, commit);
    const dir = containedDir(tree, src.path);
    if (!dir) throw new TetherError('invalid_bundle', `${src.path}: no such folder inside the repository at ${commit}`, { status: 422 });
    const { bundle, problems } = validateBundleDir(dir);
    if (!bundle) {
      throw new TetherError('invalid_bundle', `the bundle at ${ref === commit ? commit.slice(0, 12) : `${ref} (${commit.slice(0, 12)})`} has ${problems.length} problem(s):\n${formatProblems(problems)}`, { status: 422 });
    }
    return { bundle, commit };
  }

  // ------------------------------------------------------------------ instances

  async deploy(aid: string, req: DeployRequest): Promise<DeployResponse> {
    const { db, clock } = this.d;
    const src = await repo.getBundleSource(db, aid, req.bundle);
    if (!src) throw notFound(`bundle ${req.bundle} is not registered`, 'bundle_not_found');
    const cluster = await getCluster(db, aid, req.cluster);
    if (!cluster) throw notFound(`cluster ${req.cluster} does not exist`, 'cluster_not_found');
    const { bundle, commit } = await this.load(aid, src);
    const given = { ...req.inputs };
    const inputs = resolveInputs(bundle, given);
    if (inputs.problems.length) throw badRequest(inputs.problems.join('; '), 'invalid_inputs');

    let osid = newOsid(bundleType(bundle));
    for (let i = 0; (await repo.osidExists(db, osid)) && i < 10; i++) osid = newOsid(bundleType(bundle));
    const ctx: InstanceContext = { osid, cluster: cluster.cid, clusterDomain: cluster.domain, git: { url: src.url, commit, path: src.path } };
    const flow = compileBundle(bundle, inputs.values, ctx, 'apply');
    const job = await this.submit(aid, cluster.cid, flow, osid, 'apply', req.timeoutSeconds);
    const now = clock.now();
    const row: InstanceRow = {
      aid,
      osid,
      cid: cluster.cid,
      source: src.name,
      bundle_name: bundle.name,
      bundle_version: bundle.version,
      git_url: src.url,
      git_path: src.path,
      commit_sha: commit,
      bundle: JSON.stringify(bundle),
      inputs: JSON.stringify(given),
      last_job_id: job.id,
      last_action: 'apply',
      outputs: null,
      outputs_job_id: null,
      sync_job_id: null,
      sync_status: null,
      last_checked_at: null,
      ...repo.DRIFT_DEFAULTS,
      created_at: now,
      updated_at: now,
    };
    await repo.insertInstance(db, row);
    this.d.log.info({ aid, osid, cid: cluster.cid, bundle: bundle.name, commit, jobId: job.id }, 'instance deploying');
    return { osid, jobId: job.id, version: 1, instance: await this.view(row) };
  }

  /**
   * Upgrades in place: the source's ref is pinned again, earlier inputs are kept unless given.
   * With `version`, rolls back instead: that version's commit and inputs, as a new version.
   */
  async redeploy(aid: string, osid: string, req: RedeployRequest): Promise<DeployResponse> {
    const row = await this.idle(aid, osid);
    if (row.last_action === 'delete') throw conflict(`instance ${osid} has been deleted`, 'instance_deleted');
    if (req.version !== undefined) return this.rollback(row, req.version, req.timeoutSeconds);
    const src = await repo.getBundleSource(this.d.db, aid, row.source);
    if (!src) throw notFound(`bundle ${row.source} is no longer registered`, 'bundle_not_found');
    const cluster = (await getCluster(this.d.db, aid, row.cid))!;
    const { bundle, commit } = await this.load(aid, src);
    const previous = JSON.parse(row.inputs) as Record<string, unknown>;
    // Inputs the new version no longer declares are dropped; new ones are checked.
    const kept = Object.fromEntries(Object.entries(previous).filter(([k]) => Object.hasOwn(bundle.inputs, k)));
    const given = { ...kept, ...req.inputs };
    const inputs = resolveInputs(bundle, req.inputs, kept);
    if (inputs.problems.length) throw badRequest(inputs.problems.join('; '), 'invalid_inputs');
    const ctx: InstanceContext = { osid, cluster: row.cid, clusterDomain: cluster.domain, git: { url: src.url, commit, path: src.path } };
    const job = await this.submit(aid, row.cid, await this.applyFlow(row, { bundle, inputs: inputs.values, ctx }), osid, 'apply', req.timeoutSeconds);
    const version = await repo.updateInstanceJob(this.d.db, aid, osid, {
      jobId: job.id,
      action: 'apply',
      now: this.d.clock.now(),
      apply: {
        action: 'upgrade',
        rollbackOf: null,
        bundle_name: bundle.name,
        bundle_version: bundle.version,
        git_url: src.url,
        git_path: src.path,
        commit_sha: commit,
        bundle: JSON.stringify(bundle),
        inputs: JSON.stringify(given),
      },
    });
    this.d.log.info({ aid, osid, commit, version, jobId: job.id }, 'instance upgrading');
    return { osid, jobId: job.id, version, instance: await this.get(aid, osid) };
  }

  /**
   * Deploys version `n` again (its bundle, commit and inputs as they were; the source need not be
   * registered any more) as the next version, like `helm rollback`.
   */
  private async rollback(row: InstanceRow, n: number, timeoutSeconds?: number): Promise<DeployResponse> {
    const { aid, osid } = row;
    const v = await repo.getInstanceVersion(this.d.db, aid, osid, n);
    if (!v) throw notFound(`instance ${osid} has no version ${n}`, 'instance_version_not_found');
    const bundle = JSON.parse(v.bundle) as Bundle;
    const cluster = (await getCluster(this.d.db, aid, row.cid))!;
    const inputs = resolveInputs(bundle, {}, JSON.parse(v.inputs) as Record<string, unknown>);
    if (inputs.problems.length) throw badRequest(inputs.problems.join('; '), 'invalid_inputs');
    const ctx: InstanceContext = { osid, cluster: row.cid, clusterDomain: cluster.domain, git: { url: v.git_url, commit: v.commit_sha, path: v.git_path } };
    const job = await this.submit(aid, row.cid, await this.applyFlow(row, { bundle, inputs: inputs.values, ctx }), osid, 'apply', timeoutSeconds);
    const { bundle_name, bundle_version, git_url, git_path, commit_sha, inputs: given } = v;
    const version = await repo.updateInstanceJob(this.d.db, aid, osid, {
      jobId: job.id,
      action: 'apply',
      now: this.d.clock.now(),
      apply: { action: 'rollback', rollbackOf: n, bundle_name, bundle_version, git_url, git_path, commit_sha, bundle: v.bundle, inputs: given },
    });
    this.d.log.info({ aid, osid, commit: commit_sha, rollbackOf: n, version, jobId: job.id }, 'instance rolling back');
    return { osid, jobId: job.id, version, instance: await this.get(aid, osid) };
  }

  /**
   * Applies the instance's current desired state again (the latest version's bundle, commit and
   * inputs, as they are), as the next version (action `sync`): what repairs drift. Like a
   * rollback to the latest version, so the source need not be registered any more. With `state`
   * (`tether sync --file`), that commit (fetched from the registered source) and/or those inputs
   * (all of them: a missing one takes its default) instead; still action `sync`. Pruning as on
   * an upgrade.
   */
  async sync(aid: string, osid: string, timeoutSeconds?: number, state: DesiredStateRequest = {}): Promise<DeployResponse> {
    const row = await this.idle(aid, osid);
    if (row.last_action === 'delete') throw conflict(`instance ${osid} has been deleted`, 'instance_deleted');
    const d = await this.desiredState(row, state);
    const job = await this.submit(aid, row.cid, await this.applyFlow(row, d), osid, 'apply', timeoutSeconds);
    const version = await repo.updateInstanceJob(this.d.db, aid, osid, { jobId: job.id, action: 'apply', now: this.d.clock.now(), apply: { action: 'sync', rollbackOf: null, ...d.record } });
    this.d.log.info({ aid, osid, commit: d.record.commit_sha, version, jobId: job.id }, 'instance syncing');
    return { osid, jobId: job.id, version, instance: await this.get(aid, osid) };
  }

  /** The desired state an instance is synced or compared to (desired-state.ts). */
  private async desiredState(row: InstanceRow, state: DesiredStateRequest): Promise<ResolvedState> {
    return resolveDesiredState({ db: this.d.db, load: (src, ref) => this.load(row.aid, src, ref) }, row, state);
  }

  /** The apply flow of `next` with pruning (prune.ts). */
  private async applyFlow(row: InstanceRow, next: DesiredState): Promise<FlowSpec> {
    return applyFlowWithPruning({ db: this.d.db, queue: this.d.queue }, row, next);
  }

  /** The newest `limit` versions of the instance's desired state (below `before`), oldest first. */
  async versions(aid: string, osid: string, page: { limit: number; before?: number }): Promise<InstanceVersionView[]> {
    if (!(await repo.getInstance(this.d.db, aid, osid))) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    return (await repo.listInstanceVersions(this.d.db, aid, osid, page)).map(versionView);
  }

  async version(aid: string, osid: string, n: number): Promise<InstanceVersionView> {
    if (!(await repo.getInstance(this.d.db, aid, osid))) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    const v = await repo.getInstanceVersion(this.d.db, aid, osid, n);
    if (!v) throw notFound(`instance ${osid} has no version ${n}`, 'instance_version_not_found');
    return versionView(v);
  }

  /** Tears the instance down in reverse order (helm uninstall, manifest delete, tofu destroy), then its namespace. */
  async delete(aid: string, osid: string, timeoutSeconds?: number): Promise<DeployResponse> {
    const row = await this.idle(aid, osid);
    const state = deriveState(row.last_action, (await this.d.queue.get(aid, row.last_job_id)).state);
    if (state === 'deleted') throw conflict(`instance ${osid} has already been deleted`, 'instance_deleted');
    const bundle = JSON.parse(row.bundle) as Bundle;
    const cluster = (await getCluster(this.d.db, aid, row.cid))!;
    const inputs = resolveInputs(bundle, {}, JSON.parse(row.inputs) as Record<string, unknown>);
    const ctx = contextOf(row, cluster.domain);
    const job = await this.submit(aid, row.cid, compileBundle(bundle, inputs.values, ctx, 'delete'), osid, 'delete', timeoutSeconds);
    const version = await repo.updateInstanceJob(this.d.db, aid, osid, { jobId: job.id, action: 'delete', now: this.d.clock.now() });
    this.d.log.info({ aid, osid, jobId: job.id }, 'instance deleting');
    return { osid, jobId: job.id, version, instance: await this.get(aid, osid) };
  }

  /**
   * Checks the instance for drift: its current desired state (the latest version's commit and
   * inputs) compiled to a flow of diff steps, queued as a job. The result is recorded on the
   * instance (syncStatus, lastCheckedAt) once the job ended, when the instance is next read.
   * A check of its own desired state while one is outstanding (queued or running) answers that
   * one (`reused`) rather than queue a duplicate; checks asked for at once are taken in turn.
   */
  async diff(aid: string, osid: string, timeoutSeconds?: number, state: DesiredStateRequest = {}): Promise<DiffResponse> {
    if (state.commit !== undefined || state.inputs !== undefined) return this.checkDrift(aid, osid, timeoutSeconds, state);
    const key = `${aid}/${osid}`;
    const before = this.checking.get(key) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(() => this.checkDrift(aid, osid, timeoutSeconds, state));
    this.checking.set(key, mine);
    try {
      return await mine;
    } finally {
      if (this.checking.get(key) === mine) this.checking.delete(key);
    }
  }

  private async checkDrift(aid: string, osid: string, timeoutSeconds: number | undefined, state: DesiredStateRequest): Promise<DiffResponse> {
    const row = await repo.getInstance(this.d.db, aid, osid);
    if (!row) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    if (row.last_action === 'delete') throw conflict(`instance ${osid} has been deleted`, 'instance_deleted');
    const d = await this.desiredState(row, state);
    const applyJob = row.outputs_job_id ?? (row.last_action === 'apply' ? row.last_job_id : null);
    const applyOutputs = applyJob === null ? null : await this.d.queue.get(aid, applyJob).then((j) => (j.state === 'succeeded' ? j.outputs : null), () => null);
    const live = await liveVersions(this.d.db, row, d.ctx.clusterDomain);
    // A diff against another desired state (--file) says nothing about the instance's own.
    const own = state.commit === undefined && state.inputs === undefined;
    if (own && row.sync_job_id !== null) {
      const outstanding = await this.d.queue.get(aid, row.sync_job_id).catch(() => undefined);
      if (outstanding && !isTerminal(outstanding.state)) {
        this.d.log.info({ aid, osid, jobId: outstanding.id }, 'instance drift check already outstanding: reused');
        return { osid, jobId: outstanding.id, reused: true, prune: prunedResources(live.map((v) => v.state.bundle), d.bundle) };
      }
    }
    const compat = await this.forClusterAgent(aid, row.cid, diffWithPruning(compileDiff(d.bundle, d.inputs, d.ctx, applyOutputs), await appliedBefore(this.d.queue, row, live)));
    const { command } = await this.d.queue.submit(aid, { target: { cluster: row.cid }, type: 'flow', spec: compat.flow, maxAttempts: 1, ...(timeoutSeconds ? { timeoutSeconds } : {}) });
    await this.noteOmittedPrune(command.id, compat, true);
    if (own) await repo.setInstanceSyncJob(this.d.db, aid, osid, command.id);
    this.d.log.info({ aid, osid, jobId: command.id, own }, 'instance drift check queued');
    return { osid, jobId: command.id, reused: false, prune: prunedResources(live.map((v) => v.state.bundle), d.bundle) };
  }

  /**
   * What the instance's last diff job found. Recorded when it ended (drift.scheduler.ts); should
   * that not have happened yet, it is recorded here, once (recordEndedCheck).
   */
  private async syncOf(row: InstanceRow): Promise<{ syncStatus: InstanceView['syncStatus']; lastCheckedAt: string | null }> {
    if (row.sync_job_id !== null && row.checked_job_id !== row.sync_job_id) {
      const job = await this.d.queue.get(row.aid, row.sync_job_id).catch(() => undefined);
      if (job && isTerminal(job.state)) {
        const r = await recordEndedCheck(this.d.db, this.d.clock, row.aid, row.osid, job, this.d.onCheckRecorded);
        return { syncStatus: r.status, lastCheckedAt: iso(r.checkedAt) };
      }
    }
    return { syncStatus: row.sync_status ?? 'unknown', lastCheckedAt: iso(row.last_checked_at) };
  }

  /** Per-instance drift check settings (PATCH /v1/instances/{osid}); refused for a deleted instance. */
  async setDriftSettings(aid: string, osid: string, s: DriftSettingsRequest): Promise<InstanceView> {
    const row = await repo.getInstance(this.d.db, aid, osid);
    if (!row) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    if (row.last_action === 'delete') throw conflict(`instance ${osid} has been deleted`, 'instance_deleted');
    await updateDriftSettings(this.d.db, aid, osid, { ...(s.driftCheck !== undefined ? { intervalSeconds: storedInterval(s.driftCheck) } : {}), ...(s.autoSync !== undefined ? { autoSync: s.autoSync } : {}) });
    this.d.log.info({ aid, osid, driftCheck: s.driftCheck, autoSync: s.autoSync }, 'instance drift check settings changed');
    return this.get(aid, osid);
  }

  async get(aid: string, osid: string): Promise<InstanceView> {
    const row = await repo.getInstance(this.d.db, aid, osid);
    if (!row) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    return this.view(row);
  }

  /** A page of an account's instances, oldest first. */
  async list(aid: string, f: { cid?: string; limit: number; cursor?: string }): Promise<{ instances: InstanceView[]; nextCursor: string | null }> {
    const after = decodeCursor(f.cursor, z.tuple([z.number().int(), z.string().max(100)]));
    const rows = await repo.listInstances(this.d.db, aid, { cid: f.cid, limit: f.limit + 1, after });
    const p = page(rows, f.limit, (r) => [r.created_at, r.osid], (r) => r);
    const out: InstanceView[] = [];
    for (const r of p.items) out.push(await this.view(r));
    return { instances: out, nextCursor: p.nextCursor };
  }

  /** The instance, refused with 409 while its last job has not ended (one operation at a time). */
  private async idle(aid: string, osid: string): Promise<InstanceRow> {
    const row = await repo.getInstance(this.d.db, aid, osid);
    if (!row) throw notFound(`instance ${osid} does not exist`, 'instance_not_found');
    const job = await this.d.queue.get(aid, row.last_job_id);
    if (!isTerminal(job.state)) throw conflict(`instance ${osid} is busy: job ${job.id} (${row.last_action}) is ${job.state}`, 'instance_busy');
    return row;
  }

  private async submit(aid: string, cid: string, flow: FlowSpec, osid: string, action: 'apply' | 'delete', timeoutSeconds?: number): Promise<CommandView> {
    const compat = await this.forClusterAgent(aid, cid, flow);
    const { command } = await this.d.queue.submit(aid, { target: { cluster: cid }, type: 'flow', spec: compat.flow, ...(timeoutSeconds ? { timeoutSeconds } : {}) });
    await this.noteOmittedPrune(command.id, compat, false);
    this.d.log.debug({ osid, action, jobId: command.id }, 'instance job queued');
    return command;
  }

  /** The flow as the cluster's agent takes it: without `prune` in manifest steps for an agent too old for it (agent-compat.plan.ts). */
  private async forClusterAgent(aid: string, cid: string, flow: FlowSpec): Promise<{ flow: FlowSpec; omitted: string[]; version?: string }> {
    const old = oldAgentVersion(await clusterAgentVersions(this.d.db, aid, cid), this.d.clock.now());
    if (old === undefined) return { flow, omitted: [] };
    const r = withoutManifestPrune(flow);
    return r.omitted.length ? { ...r, version: old } : { flow, omitted: [] };
  }

  /** Says in the job's log (first line, stream system) that `prune` was left out, and logs it. */
  private async noteOmittedPrune(jobId: number, compat: { omitted: string[]; version?: string }, diff: boolean): Promise<void> {
    if (!compat.version) return;
    await appendLogs(this.d.db, jobId, [{ ts: this.d.clock.now(), stream: 'system', text: pruneOmittedLine(compat.version, compat.omitted, diff) }], 1024 * 1024);
    this.d.log.warn({ jobId, agentVersion: compat.version, steps: compat.omitted }, 'prune left out: the cluster agent is too old for it');
  }

  /** The view; outputs are computed once from the last succeeded apply job and stored. */
  private async view(row: InstanceRow): Promise<InstanceView> {
    const job = await this.d.queue.get(row.aid, row.last_job_id);
    const cluster = (await getCluster(this.d.db, row.aid, row.cid))!;
    const bundle = JSON.parse(row.bundle) as Bundle;
    const ctx = contextOf(row, cluster.domain);
    const inputs = resolveInputs(bundle, {}, JSON.parse(row.inputs) as Record<string, unknown>).values;
    let outputs: InstanceOutputs | null = row.outputs ? (JSON.parse(row.outputs) as InstanceOutputs) : null;
    if (row.last_action === 'apply' && job.state === 'succeeded' && row.outputs_job_id !== job.id) {
      outputs = instanceOutputs(bundle, inputs, ctx, job.outputs);
      await repo.storeInstanceOutputs(this.d.db, row.aid, row.osid, { outputs: JSON.stringify(outputs), jobId: job.id });
      if (outputs.missing.length) this.d.log.warn({ osid: row.osid, missing: outputs.missing }, 'outputs not reported by the deployment');
    }
    const state = deriveState(row.last_action, job.state);
    return {
      osid: row.osid,
      cluster: row.cid,
      namespace: namespaceOf(row.osid),
      host: hostOf(ctx),
      ports: Object.fromEntries(bundle.ports.map((p) => [String(p), portHostOf(ctx, p)])),
      bundle: { source: row.source, name: row.bundle_name, version: row.bundle_version, url: row.git_url, path: row.git_path, commit: row.commit_sha },
      inputs,
      state,
      version: await repo.currentInstanceVersion(this.d.db, row.aid, row.osid),
      job: { id: job.id, action: row.last_action, state: job.state, error: job.error },
      outputs: state === 'deleted' ? {} : (outputs?.outputs ?? {}),
      sensitiveOutputs: state === 'deleted' ? {} : (outputs?.sensitiveOutputs ?? {}),
      ...(await this.syncOf(row)),
      ...driftView(row, this.d.driftIntervalSeconds ?? 600),
      createdAt: iso(row.created_at)!,
      updatedAt: iso(row.updated_at)!,
    };
  }
}

export function deriveState(action: 'apply' | 'delete', job: CommandView['state']): InstanceState {
  if (!isTerminal(job)) return action === 'apply' ? 'deploying' : 'deleting';
  if (job === 'succeeded') return action === 'apply' ? 'deployed' : 'deleted';
  return action === 'apply' ? 'failed' : 'delete_failed';
}

function contextOf(row: InstanceRow, clusterDomain: string): InstanceContext {
  return { osid: row.osid, cluster: row.cid, clusterDomain, git: { url: row.git_url, commit: row.commit_sha, path: row.git_path } };
}

function versionView(v: InstanceVersionWithJob): InstanceVersionView {
  const bundle = JSON.parse(v.bundle) as Bundle;
  return {
    version: v.version,
    action: v.action,
    rollbackOf: v.rollback_of,
    createdAt: iso(v.created_at)!,
    bundle: { name: v.bundle_name, version: v.bundle_version, url: v.git_url, path: v.git_path, commit: v.commit_sha },
    inputs: resolveInputs(bundle, {}, JSON.parse(v.inputs) as Record<string, unknown>).values,
    job: v.job_id === null ? null : { id: v.job_id, state: v.job_state },
  };
}

function sourceView(r: repo.BundleSourceRow): BundleSourceView {
  return {
    name: r.name,
    url: r.url,
    ref: r.ref,
    path: r.path,
    credentials: r.git_username !== null,
    commit: r.commit_sha,
    bundle: r.bundle_info === null ? null : (JSON.parse(r.bundle_info) as BundleInfo),
    ...(r.bundle_error !== null ? { bundleError: r.bundle_error } : {}),
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
}

/** Why a bundle did not validate, as stored with its source: at most this many characters. */
const MAX_BUNDLE_ERROR = 4096;

/** What the deploy form needs of a validated bundle: its name, version, description and typed inputs (never its resources). */
function bundleInfo(b: Bundle): BundleInfo {
  const inputs: BundleInfo['inputs'] = {};
  for (const [k, i] of Object.entries(b.inputs)) {
    inputs[k] = { type: i.type, ...(i.description !== undefined ? { description: i.description } : {}), required: i.required === true, ...(i.default !== undefined ? { default: i.default } : {}) };
  }
  return { name: b.name, version: b.version, ...(b.description !== undefined ? { description: b.description } : {}), inputs };
}

/** The real folder `sub` names inside `root` (symbolic links must stay inside), or undefined. */
function containedDir(root: string, sub: string): string | undefined {
  const realRoot = realpathSync(root);
  const lexical = resolve(realRoot, sub);
  if (!existsSync(lexical)) return undefined;
  const real = realpathSync(lexical);
  const rel = relative(realRoot, real);
  if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return undefined;
  return statSync(real).isDirectory() ? real : undefined;
}
