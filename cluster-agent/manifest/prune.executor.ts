/**
 * Pruning inside a manifest resource: the objects an earlier apply applied (the spec's `prune`)
 * that the manifests no longer list are looked up, and deleted (background propagation) when
 * Tether's field manager still manages them. An object that is gone, whose kind the cluster no
 * longer serves, or that Tether does not manage (created or taken over by someone else) is left
 * alone. `check` only reports what would be deleted (the diff).
 */
import { CommandFailure } from '../../common/errors.ts';
import { kubeMessage, kubeRejected, kubeStatus, type ObjectApi } from '../kube/kube.ts';
import { FIELD_MANAGER } from '../kube/secrets.ts';
import { checkAborted, type StepContext } from '../steps/step.ts';
import { discover } from './manifest.executor.ts';
import type { AppliedRef } from './manifest.plan.ts';
import { managedBy, prunable } from './prune.plan.ts';

const describe = (r: AppliedRef) => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

/** The objects to prune that exist and that Tether manages, in deletion order; deleted unless `check`. */
export async function pruneObjects(api: ObjectApi, previous: readonly AppliedRef[], current: readonly AppliedRef[], s: StepContext, mode: 'delete' | 'check'): Promise<AppliedRef[]> {
  const out: AppliedRef[] = [];
  for (const r of prunable(previous, current)) {
    checkAborted(s.exec.signal);
    const meta = { apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } };
    const resource = await discover(api, meta, s.exec.signal, 0).catch(() => undefined);
    if (!resource) continue; // the kind is gone, and the object with it
    let live: unknown;
    try {
      live = await api.read(meta);
    } catch (err) {
      if (kubeStatus(err) === 404) continue;
      throw new CommandFailure('kube_error', `cannot read ${describe(r)} to prune it: ${kubeMessage(err)}`, { cause: err });
    }
    if (!managedBy(live, FIELD_MANAGER)) {
      s.exec.emit(`${describe(r)} is no longer in the manifests but Tether does not manage it: left in place`);
      continue;
    }
    if (mode === 'check') {
      s.exec.emit(`${describe(r)}: would be pruned`);
      out.push(r);
      continue;
    }
    try {
      await api.delete(meta, undefined, undefined, undefined, undefined, 'Background');
      s.exec.emit(`pruned ${describe(r)}`);
    } catch (err) {
      if (kubeStatus(err) === 404) continue;
      throw new CommandFailure(kubeRejected(err) ? 'kube_rejected' : 'delete_failed', `cannot prune ${describe(r)}: ${kubeMessage(err)}`, { cause: err });
    }
    out.push(r);
  }
  return out;
}
