/**
 * Applies manifests with server-side apply (field manager "tether", conflicts forced), in the
 * planned order; waits for each CRD to be established before objects of its kinds are applied.
 */
import { TetherError } from '../common/errors.ts';
import type { ManifestSpec } from '../common/specs.ts';
import { kubeMessage, kubeStatus, type ObjectApi } from './kube.ts';
import { isCrd, orderForApply, parseManifests, refOf, withNamespace, type AppliedRef, type KubeObject } from './manifest.plan.ts';
import { FIELD_MANAGER } from './secrets.ts';
import { checkAborted, plainLookup, type StepContext, type StepResult } from './step.ts';

const DISCOVERY_WAIT_MS = 30_000;

export async function executeManifest(spec: ManifestSpec, s: StepContext): Promise<StepResult> {
  const objects = orderForApply(parseManifests(spec.manifests));
  const api = s.deps.kube.objects;
  const defaultNamespace = spec.namespace ?? 'default';
  const applied: AppliedRef[] = [];
  for (const o of objects) {
    checkAborted(s.exec.signal);
    const resource = await discover(api, o, s.exec.signal);
    const obj = withNamespace(o, resource.namespaced, defaultNamespace);
    const ref = refOf(obj);
    const what = `${obj.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
    try {
      await api.apply(obj, { fieldManager: FIELD_MANAGER, force: true });
    } catch (err) {
      const status = kubeStatus(err);
      throw new TetherError('apply_failed', `cannot apply ${what}: ${kubeMessage(err)}`, {
        retryable: status === undefined || status >= 500 || status === 429,
        cause: err,
      });
    }
    s.exec.emit(`applied ${what}`);
    applied.push(ref);
    if (isCrd(obj)) await waitEstablished(api, obj, s.exec.signal);
  }
  const outputs: Record<string, unknown> = { applied };
  return { outputs, lookup: plainLookup(outputs) };
}

/** The API resource of an object's kind; a kind from a CRD applied just before may take a moment. */
async function discover(api: ObjectApi, o: KubeObject, signal: AbortSignal) {
  const deadline = Date.now() + DISCOVERY_WAIT_MS;
  for (;;) {
    let resource;
    try {
      resource = await api.lookup(o.apiVersion, o.kind);
    } catch (err) {
      if (kubeStatus(err) !== 404) throw new TetherError('kube_error', `cannot discover ${o.apiVersion} ${o.kind}: ${kubeMessage(err)}`, { retryable: true, cause: err });
    }
    if (resource) return resource;
    if (Date.now() > deadline) throw new TetherError('unknown_kind', `the cluster does not serve ${o.kind} in ${o.apiVersion}`);
    api.forget(o.apiVersion);
    await sleep(250, signal);
    checkAborted(signal);
  }
}

async function waitEstablished(api: ObjectApi, crd: KubeObject, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + DISCOVERY_WAIT_MS;
  for (;;) {
    const current = (await api.read({ apiVersion: crd.apiVersion, kind: crd.kind, metadata: { name: crd.metadata.name } })) as {
      status?: { conditions?: { type: string; status: string }[] };
    };
    if (current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
    if (Date.now() > deadline) throw new TetherError('apply_failed', `CustomResourceDefinition ${crd.metadata.name} was not established within ${DISCOVERY_WAIT_MS / 1000}s`);
    await sleep(200, signal);
    checkAborted(signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
