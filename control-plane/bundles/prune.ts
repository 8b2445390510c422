/**
 * Pruning, the part that reads the record (prune.plan.ts decides): which versions of an instance
 * may be in the cluster (those since its last succeeded apply), what their apply flows applied,
 * and the apply flow of a new desired state with its removals. SQL stays in ../db.
 */
import type { AppliedRefSpec, FlowSpec } from '../../common/specs.ts';
import type { Db } from '../db/database.ts';
import * as repo from '../db/bundles.repository.ts';
import type { InstanceRow } from '../db/bundles.repository.ts';
import type { QueueService } from '../queue/queue.service.ts';
import type { Bundle } from './bundle.schema.ts';
import { compileBundle, resolveInputs } from './compile.ts';
import { appliedObjects, pruneSteps, withPruning, type DesiredState } from './prune.plan.ts';

/** How many versions back pruning looks for one whose apply succeeded. */
const MAX_LIVE_VERSIONS = 50;

export interface LiveVersion {
  state: DesiredState;
  /** Its apply job (null: not known). */
  jobId: number | null;
}

/**
 * What may be in the cluster: the instance's versions since its last succeeded apply (inclusive;
 * or since one whose job is unknown or expired), newest first, at most 50; the current desired
 * state alone for an instance without versions.
 */
export async function liveVersions(db: Db, row: InstanceRow, clusterDomain: string): Promise<LiveVersion[]> {
  const stateOf = (v: Pick<InstanceRow, 'bundle' | 'inputs' | 'git_url' | 'commit_sha' | 'git_path'>): DesiredState => {
    const bundle = JSON.parse(v.bundle) as Bundle;
    const inputs = resolveInputs(bundle, {}, JSON.parse(v.inputs) as Record<string, unknown>).values;
    return { bundle, inputs, ctx: { osid: row.osid, cluster: row.cid, clusterDomain, git: { url: v.git_url, commit: v.commit_sha, path: v.git_path } } };
  };
  const out: LiveVersion[] = [];
  for (const v of (await repo.listInstanceVersions(db, row.aid, row.osid, { limit: MAX_LIVE_VERSIONS })).reverse()) {
    out.push({ state: stateOf(v), jobId: v.job_id });
    if (v.job_id === null || v.job_state === null || v.job_state === 'succeeded') break;
  }
  return out.length ? out : [{ state: stateOf(row), jobId: null }];
}

/** What those versions' apply flows (and the instance's last succeeded one) applied, per manifest step; jobs retention deleted are skipped. */
export async function appliedBefore(queue: Pick<QueueService, 'get'>, row: InstanceRow, live: readonly Pick<LiveVersion, 'jobId'>[]): Promise<Map<string, AppliedRefSpec[]>> {
  const ids = new Set([row.outputs_job_id, row.last_action === 'apply' ? row.last_job_id : null, ...live.map((v) => v.jobId)].filter((n): n is number => n !== null));
  const outputs: unknown[] = [];
  for (const id of ids) outputs.push(await queue.get(row.aid, id).then((j) => j.outputs, () => null));
  return appliedObjects(outputs);
}

/**
 * The apply flow of `next` with pruning: its manifest steps get the objects the live versions'
 * flows applied as `prune`; after its steps, the delete steps of the resources the live versions
 * have and `next` no longer has.
 */
export async function applyFlowWithPruning(d: { db: Db; queue: Pick<QueueService, 'get'> }, row: InstanceRow, next: DesiredState): Promise<FlowSpec> {
  const live = await liveVersions(d.db, row, next.ctx.clusterDomain);
  return withPruning(compileBundle(next.bundle, next.inputs, next.ctx, 'apply'), await appliedBefore(d.queue, row, live), pruneSteps(live.map((v) => v.state), next.bundle));
}
