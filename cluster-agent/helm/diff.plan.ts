/**
 * The helm `diff` as a pure plan: `helm template` of the spec (the chart and values a `helm`
 * command would install, hooks and tests left out: they are not part of the release's standing
 * objects), and the release's own verdict from `helm status`/`helm history` JSON: missing, not
 * deployed (failed, pending-*), or its deployed revision not made by Tether (any revision whose
 * description is not {@link TETHER_HELM_DESCRIPTION}, e.g. `Rollback to 1` of a hand-run rollback).
 */
import type { HelmSpec } from '../../common/specs.ts';
import type { DiffResource } from '../manifest/diff.plan.ts';
import { chartArgs, TETHER_HELM_DESCRIPTION } from './helm.plan.ts';

/**
 * Helm 3 writes objects with client-side apply (create, then three-way merge patches) as field
 * manager `helm`, operation `Update`: those are the fields a helm release owns. The diff's dry run
 * applies the rendered object as `helm` (server-side, forced) so a field someone else took over is
 * counted again, as for manifests.
 */
export const HELM_FIELD_MANAGER = 'helm';
export const HELM_OWNED_OPERATIONS: readonly string[] = ['Update', 'Apply'];

type HelmTarget = Omit<HelmSpec, 'action'>;

/** `helm template` with the same chart and values arguments as the upgrade; stdout holds the values: captured, never streamed. */
export function planHelmTemplate(input: { spec: HelmTarget; kubeConfig: string; chartPath?: string | undefined; valuesFile?: string | undefined }): string[] {
  const { flags, chart } = chartArgs({ spec: { ...input.spec, action: undefined }, chartPath: input.chartPath });
  return [
    'template',
    `--namespace=${input.spec.namespace}`,
    `--kubeconfig=${input.kubeConfig}`,
    '--no-hooks',
    '--skip-tests',
    ...flags,
    ...(input.valuesFile ? [`--values=${input.valuesFile}`] : []),
    '--',
    input.spec.release,
    chart,
  ];
}

/** helm's answer when the release does not exist. */
export const isReleaseNotFound = (stderr: string): boolean => /release: not found/i.test(stderr);

export interface HelmHistoryEntry {
  revision: number;
  status: string;
  description: string;
}

/** `helm history -o json`: revisions with status and description (nothing else is read). */
export function parseHistoryDescriptions(stdout: string): HelmHistoryEntry[] {
  let r: unknown;
  try {
    r = JSON.parse(stdout.slice(Math.max(0, stdout.search(/[[{]/))));
  } catch {
    throw new Error('helm history did not print JSON');
  }
  if (!Array.isArray(r)) throw new Error('helm history did not print a list');
  return r.flatMap((h: { revision?: unknown; status?: unknown; description?: unknown }) =>
    typeof h?.revision === 'number' && typeof h.status === 'string' ? [{ revision: h.revision, status: h.status, description: typeof h.description === 'string' ? h.description.slice(0, 200) : '' }] : [],
  );
}

/** The release as a diff resource: missing, in-sync, or drifted with `diff` saying why. */
export function releaseVerdict(release: { namespace: string; name: string }, history: HelmHistoryEntry[] | 'missing'): DiffResource & { revision?: number } {
  const base = { apiVersion: 'helm.sh/v3', kind: 'Release', namespace: release.namespace, name: release.name };
  if (history === 'missing' || history.length === 0) return { ...base, status: 'missing' };
  const last = history.reduce((a, b) => (b.revision > a.revision ? b : a));
  if (last.status !== 'deployed') return { ...base, status: 'drifted', revision: last.revision, diff: `the release is ${last.status} (revision ${last.revision}${last.description ? `: ${last.description}` : ''})\n` };
  if (last.description !== TETHER_HELM_DESCRIPTION) {
    return { ...base, status: 'drifted', revision: last.revision, diff: `the deployed revision ${last.revision} was not made by Tether (${last.description || 'no description'})\n` };
  }
  return { ...base, status: 'in-sync', revision: last.revision };
}
