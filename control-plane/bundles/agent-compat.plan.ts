/**
 * What a cluster agent of an older version can take, the pure part. Manifest specs carry `prune`
 * (the objects an earlier apply applied, prune.plan.ts) since cluster agent 0.2.0; an agent built
 * before refuses a spec with it (its spec schema is strict), so the whole job would fail there.
 * For a cluster whose agent reports an older version, the control plane leaves `prune` out of the
 * manifest steps (apply and diff), and says in the job's log that those objects are not pruned.
 */
import type { FlowSpec, FlowStep } from '../../common/specs.ts';

/** The first cluster agent version that takes `prune` in manifest specs. */
export const MANIFEST_PRUNE_SINCE = '0.2.0';

/** major.minor.patch of a reported version ("0.1.0", "v0.2.0-rc1"); undefined when it is none. */
function parts(version: string): [number, number, number] | undefined {
  const m = /^v?(\d{1,6})\.(\d{1,6})\.(\d{1,6})/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * Whether an agent reporting `version` takes `prune`. Not reported yet (null) or not a version:
 * assumed current (the agent that will claim the job is not known to be old).
 */
export function takesManifestPrune(version: string | null): boolean {
  const v = version === null ? undefined : parts(version);
  if (!v) return true;
  const min = parts(MANIFEST_PRUNE_SINCE)!;
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i]! > min[i]!;
  return true;
}

/** The flow with `prune` left out of its manifest steps (apply and diff), and the names of the steps that had one. */
export function withoutManifestPrune(flow: FlowSpec): { flow: FlowSpec; omitted: string[] } {
  const omitted: string[] = [];
  const steps = flow.steps.map((st): FlowStep => {
    if (st.type === 'manifest' && st.spec.prune !== undefined) {
      omitted.push(st.name);
      const { prune: _prune, ...spec } = st.spec;
      return { ...st, spec };
    }
    if (st.type === 'diff' && st.spec.target === 'manifest' && st.spec.spec.prune !== undefined) {
      omitted.push(st.name);
      const { prune: _prune, ...spec } = st.spec.spec;
      return { ...st, spec: { target: 'manifest', spec } };
    }
    return st;
  });
  return { flow: { steps }, omitted };
}

/** The job log's line when `prune` was left out. */
export function pruneOmittedLine(version: string, steps: readonly string[], diff: boolean): string {
  return `[tether] the cluster agent reports version ${version}, older than ${MANIFEST_PRUNE_SINCE}: objects an earlier apply made and the manifests no longer list are not ${diff ? 'reported' : 'pruned'} (steps ${steps.join(', ')}); upgrade the cluster agent`;
}

/** Agents that heartbeated this recently may claim the next job. */
const RECENT_MS = 10 * 60_000;

/**
 * The old version among the cluster agents that may claim the cluster's next job (those that
 * heartbeated in the last 10 minutes, else the one that did last), if any: then `prune` is left out.
 */
export function oldAgentVersion(agents: readonly { version: string | null; last_heartbeat_at: number | null }[], now: number): string | undefined {
  const seen = agents.filter((a) => a.last_heartbeat_at !== null).sort((a, b) => b.last_heartbeat_at! - a.last_heartbeat_at!);
  const recent = seen.filter((a) => a.last_heartbeat_at! >= now - RECENT_MS);
  const live = recent.length ? recent : seen.slice(0, 1);
  return live.find((a) => !takesManifestPrune(a.version))?.version ?? undefined;
}
