/**
 * The desired state an instance is synced or compared to: its latest version, or a state given
 * in the body of POST /v1/instances/{osid}/diff|sync (`tether diff|sync --file`): a commit of its
 * registered source (fetched through the bundle cache under the fetch policy, so a commit the
 * source does not have is 422, and validated there) and/or its inputs (all of them when given:
 * one not given takes its default).
 */
import { badRequest, notFound } from '../../common/errors.ts';
import { getCluster } from '../db/accounts.repository.ts';
import type { Db } from '../db/database.ts';
import * as repo from '../db/bundles.repository.ts';
import type { InstanceRow } from '../db/bundles.repository.ts';
import type { Bundle } from './bundle.schema.ts';
import type { DesiredStateRequest } from './bundles.wire.ts';
import { resolveInputs, type InstanceContext } from './compile.ts';
import type { DesiredState } from './prune.plan.ts';

/** A desired state ready to compile, and as a version records it. */
export type ResolvedState = DesiredState & { record: repo.DesiredState };

export interface DesiredStateDeps {
  db: Db;
  /** Pins `ref` of the source, checks its tree out and validates the bundle there. */
  load(src: repo.BundleSourceRow, ref: string): Promise<{ bundle: Bundle; commit: string }>;
}

export async function resolveDesiredState(d: DesiredStateDeps, row: InstanceRow, state: DesiredStateRequest): Promise<ResolvedState> {
  const cluster = (await getCluster(d.db, row.aid, row.cid))!;
  let bundle = JSON.parse(row.bundle) as Bundle;
  let git = { url: row.git_url, path: row.git_path, commit: row.commit_sha, bundle: row.bundle };
  if (state.commit !== undefined && state.commit !== row.commit_sha) {
    const src = await repo.getBundleSource(d.db, row.aid, row.source);
    if (!src) throw notFound(`bundle ${row.source} is no longer registered (a desired state at another commit is fetched from it)`, 'bundle_not_found');
    const loaded = await d.load(src, state.commit);
    bundle = loaded.bundle;
    git = { url: src.url, path: src.path, commit: loaded.commit, bundle: JSON.stringify(bundle) };
  }
  const previous = JSON.parse(row.inputs) as Record<string, unknown>;
  const kept = Object.fromEntries(Object.entries(previous).filter(([k]) => Object.hasOwn(bundle.inputs, k)));
  const given = state.inputs ?? kept;
  const inputs = resolveInputs(bundle, given);
  if (inputs.problems.length) throw badRequest(inputs.problems.join('; '), 'invalid_inputs');
  const ctx: InstanceContext = { osid: row.osid, cluster: row.cid, clusterDomain: cluster.domain, git: { url: git.url, commit: git.commit, path: git.path } };
  const record = { bundle_name: bundle.name, bundle_version: bundle.version, git_url: git.url, git_path: git.path, commit_sha: git.commit, bundle: git.bundle, inputs: JSON.stringify(given) };
  return { bundle, inputs: inputs.values, ctx, record };
}
