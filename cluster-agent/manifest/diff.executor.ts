/**
 * The `diff` command for manifests: changes nothing. For each object, the live object is read
 * and a server-side-apply dry run (`dryRun=All`, field manager "tether", conflicts forced) says
 * what the apply would leave; diff.plan.ts compares the two on the fields Tether owns. Objects
 * that do not exist (or whose kind the cluster does not serve) are `missing`; one the API server
 * refuses is `error`. Secret values are registered with the masker and never leave the agent:
 * their diff names keys only. With `prune`, an earlier object the manifests no longer list that
 * Tether manages is reported as `prune` (the apply would delete it; counted as drifted).
 */
import type { DiffSpec } from '../../common/specs.ts';
import { kubeMessage, kubeStatus, type ObjectApi } from '../kube/kube.ts';
import { FIELD_MANAGER } from '../kube/secrets.ts';
import { checkAborted, plainLookup, type StepContext, type StepResult } from '../steps/step.ts';
import { diffObject, summarize, type DiffResource } from './diff.plan.ts';
import { discover, manifestText } from './manifest.executor.ts';
import { pruneObjects } from './prune.executor.ts';
import { orderForApply, parseManifests, refOf, withNamespace, type KubeObject } from './manifest.plan.ts';

export async function executeDiff(spec: Extract<DiffSpec, { target: 'manifest' }>, s: StepContext): Promise<StepResult> {
  const target = spec.spec;
  const parsed = parseManifests(await manifestText(target, s));
  const api = s.deps.kube.objects;
  const defaultNamespace = target.namespace ?? 'default';
  const resources: DiffResource[] = [];
  for (const o of orderForApply(parsed)) {
    checkAborted(s.exec.signal);
    maskSecret(o, s);
    resources.push(await diffOne(api, o, defaultNamespace, s));
  }
  // Objects an earlier apply applied that the manifests no longer list: the apply would prune them.
  if (target.prune) {
    const current = resources.map((r) => ({ apiVersion: r.apiVersion, kind: r.kind, ...(r.namespace ? { namespace: r.namespace } : {}), name: r.name }));
    for (const r of await pruneObjects(api, target.prune, current, s, 'check')) resources.push({ ...r, status: 'prune' });
  }
  const summary = summarize(resources);
  s.exec.emit(`diff: ${summary.inSync} in sync, ${summary.drifted} drifted, ${summary.missing} missing, ${summary.error} error`);
  const outputs: Record<string, unknown> = { resources, summary };
  return { outputs, lookup: plainLookup(outputs) };
}

/** How objects are compared: the field manager of the dry run, and whose fields (by which operations) count. */
export interface DiffOwner {
  manager: string;
  operations?: readonly string[];
}
const TETHER_OWNER: DiffOwner = { manager: FIELD_MANAGER };

/** One object's verdict: read live, server-side-apply dry run as `owner.manager`, compared on its fields. */
export async function diffOne(api: ObjectApi, o: KubeObject, defaultNamespace: string, s: StepContext, owner: DiffOwner = TETHER_OWNER): Promise<DiffResource> {
  const base = (obj: KubeObject) => {
    const ref = refOf(obj);
    return { apiVersion: ref.apiVersion, kind: ref.kind, ...(ref.namespace ? { namespace: ref.namespace } : {}), name: ref.name };
  };
  let resource;
  try {
    resource = await discover(api, o, s.exec.signal, 0);
  } catch (err) {
    return { ...base(o), status: 'error', error: err instanceof Error ? err.message : String(err) };
  }
  if (!resource) {
    api.forget(o.apiVersion); // a CRD installed since the last discovery
    resource = await discover(api, o, s.exec.signal, 0).catch(() => undefined);
  }
  if (!resource) return { ...base(o), status: 'missing', error: `the cluster does not serve ${o.kind} in ${o.apiVersion}` };
  const obj = withNamespace(o, resource.namespaced, defaultNamespace);
  const ref = refOf(obj);
  const what = `${obj.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
  let live: KubeObject;
  try {
    live = (await api.read({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } })) as KubeObject;
  } catch (err) {
    if (kubeStatus(err) === 404) {
      s.exec.emit(`${what}: missing`);
      return { ...base(obj), status: 'missing' };
    }
    return { ...base(obj), status: 'error', error: `cannot read ${what}: ${kubeMessage(err)}` };
  }
  maskSecret(live, s);
  let desired: KubeObject;
  try {
    desired = (await api.apply(obj, { fieldManager: owner.manager, force: true, dryRun: true })) as KubeObject;
  } catch (err) {
    return { ...base(obj), status: 'error', error: `the dry run of ${what} failed: ${kubeMessage(err)}` };
  }
  maskSecret(desired, s);
  const verdict = diffObject(desired, live, owner.manager, owner.operations);
  s.exec.emit(`${what}: ${verdict.status}`);
  return { ...base(obj), ...verdict };
}

/** Registers a Secret's values (decoded `data`, `stringData`) with the masker: none may leave the agent. */
export function maskSecret(o: KubeObject, s: StepContext): void {
  if (o.kind !== 'Secret' || o.apiVersion !== 'v1') return;
  for (const [field, encoded] of [['data', true], ['stringData', false]] as const) {
    const values = o[field];
    if (typeof values !== 'object' || values === null) continue;
    for (const v of Object.values(values)) {
      if (typeof v !== 'string' || v === '') continue;
      s.exec.mask(encoded ? Buffer.from(v, 'base64').toString('utf8') : v);
    }
  }
}
