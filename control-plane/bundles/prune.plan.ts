/**
 * Pruning on upgrades, rollbacks and syncs, the pure part. What may be in the cluster is what the
 * versions since the last succeeded apply (inclusive) applied: a failed or cancelled apply may
 * have left some of its resources, and its removals undone. Two levels:
 *
 * - a bundle resource (helm release, manifest set, tofu run) that one of those versions had and
 *   the new one no longer has is removed: its delete step (helm uninstall, manifest delete, tofu
 *   destroy), compiled from the newest of them that has it (its bundle, commit and inputs), runs
 *   after the new version's steps, in reverse dependency order (the newest version's resources
 *   first);
 * - inside a manifest resource both versions have, the objects the last apply applied (its step's
 *   `applied` output) go into the step's `prune`: the agent deletes those the manifests no longer
 *   list, when Tether's field manager still manages them.
 *
 * The Namespace step is never pruned (both versions have it). A resource whose name stays but
 * whose type changes is not pruned (its old release or state stays; say so in the plan).
 */
import type { AppliedRefSpec, FlowSpec, FlowStep } from '../../common/specs.ts';
import type { Bundle, BundleResource } from './bundle.schema.ts';
import { compileBundle, NAMESPACE_STEP, topologicalOrder, type InputValue, type InstanceContext } from './compile.ts';

/** A desired state as the compiler takes it. */
export interface DesiredState {
  bundle: Bundle;
  inputs: Record<string, InputValue>;
  ctx: InstanceContext;
}

/** A resource the new desired state removes, as the plan shows it. */
export interface PrunedResource {
  name: string;
  type: BundleResource['type'];
  /** What removing it does. */
  action: 'helm uninstall' | 'manifest delete' | 'tofu destroy';
}

const listOf = <T>(v: T | readonly T[]): readonly T[] => (Array.isArray(v) ? (v as readonly T[]) : [v as T]);

const ACTIONS: Record<BundleResource['type'], PrunedResource['action']> = { helm: 'helm uninstall', manifest: 'manifest delete', tofu: 'tofu destroy' };

/**
 * The resources of the previous versions (newest first) the next one no longer has, once each
 * (from the newest version that has it), in the order they are removed: each version's in
 * reverse dependency order, the newest version's first.
 */
export function prunedResources(previous: Pick<Bundle, 'resources'> | readonly Pick<Bundle, 'resources'>[], next: Pick<Bundle, 'resources'>): PrunedResource[] {
  const seen = new Set(next.resources.map((r) => r.name));
  const out: PrunedResource[] = [];
  for (const b of listOf(previous)) {
    for (const r of topologicalOrder(b.resources).reverse()) {
      if (seen.has(r.name)) continue;
      seen.add(r.name);
      out.push({ name: r.name, type: r.type, action: ACTIONS[r.type] });
    }
  }
  return out;
}

/** The delete steps of the pruned resources, each compiled from the newest previous state that has it, in removal order. */
export function pruneSteps(previous: DesiredState | readonly DesiredState[], next: Pick<Bundle, 'resources'>): FlowStep[] {
  const seen = new Set(next.resources.map((r) => r.name));
  const out: FlowStep[] = [];
  for (const p of listOf(previous)) {
    const names = new Set(p.bundle.resources.filter((r) => !seen.has(r.name)).map((r) => r.name));
    if (names.size === 0) continue;
    for (const st of compileBundle(p.bundle, p.inputs, p.ctx, 'delete').steps) {
      if (!names.has(st.name)) continue;
      seen.add(st.name);
      out.push(st);
    }
  }
  return out;
}

interface StepReport {
  name?: unknown;
  outputs?: { applied?: unknown } | null;
}

/**
 * The objects earlier apply flows applied, per manifest step (their `applied` outputs, all of
 * the given flows' outputs together, once each). Malformed entries are skipped.
 */
export function appliedObjects(flowOutputs: readonly unknown[]): Map<string, AppliedRefSpec[]> {
  const out = new Map<string, Map<string, AppliedRefSpec>>();
  for (const o of flowOutputs) {
    const steps = (o as { steps?: unknown } | null)?.steps;
    if (!Array.isArray(steps)) continue;
    for (const st of steps as StepReport[]) {
      if (typeof st?.name !== 'string' || !Array.isArray(st.outputs?.applied)) continue;
      const refs = out.get(st.name) ?? new Map<string, AppliedRefSpec>();
      for (const r of st.outputs.applied as unknown[]) {
        const ref = r as Partial<AppliedRefSpec> | null;
        if (typeof ref?.apiVersion !== 'string' || typeof ref.kind !== 'string' || typeof ref.name !== 'string') continue;
        if (ref.namespace !== undefined && typeof ref.namespace !== 'string') continue;
        const clean: AppliedRefSpec = { apiVersion: ref.apiVersion, kind: ref.kind, ...(ref.namespace ? { namespace: ref.namespace } : {}), name: ref.name };
        refs.set(JSON.stringify(clean), clean);
      }
      out.set(st.name, refs);
    }
  }
  return new Map([...out].map(([k, v]) => [k, [...v.values()]]));
}

/**
 * The new version's apply flow with pruning: each manifest step (not the Namespace's) gets the
 * objects its resource applied before as `prune`, and the pruned resources' delete steps follow
 * the new steps.
 */
export function withPruning(flow: FlowSpec, applied: Map<string, AppliedRefSpec[]>, removals: FlowStep[]): FlowSpec {
  const steps = flow.steps.map((st): FlowStep => {
    const before = applied.get(st.name);
    if (st.type !== 'manifest' || st.name === NAMESPACE_STEP || !before?.length || st.spec.action === 'delete') return st;
    return { ...st, spec: { ...st.spec, prune: before } };
  });
  return { steps: [...steps, ...removals] };
}

/** A diff flow with the same `prune` on its manifest diff steps (the diff then reports what would be pruned). */
export function diffWithPruning(flow: FlowSpec, applied: Map<string, AppliedRefSpec[]>): FlowSpec {
  return {
    steps: flow.steps.map((st): FlowStep => {
      const before = applied.get(st.name);
      if (st.type !== 'diff' || st.spec.target !== 'manifest' || st.name === NAMESPACE_STEP || !before?.length) return st;
      return { ...st, spec: { target: 'manifest', spec: { ...st.spec.spec, prune: before } } };
    }),
  };
}

/**
 * Whether an apply flow prunes: a delete step of a removed resource (`action: delete`) or a
 * manifest step given earlier objects to prune. Its end then says what the cluster holds of the
 * resources the previous versions had (drift.scheduler.ts records it on the instance).
 */
export function flowPrunes(spec: unknown): boolean {
  const steps = (spec as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(steps)) return false;
  return steps.some((s: { type?: unknown; spec?: { action?: unknown; prune?: unknown } } | null) => s?.spec?.action === 'delete' || (s?.type === 'manifest' && Array.isArray(s.spec?.prune) && s.spec.prune.length > 0));
}
