/**
 * Applies manifests with server-side apply (field manager "tether", conflicts forced), in the
 * planned order; waits for each CRD to be established before objects of its kinds are applied.
 * The YAML is inline or the files of a folder in a git repository (checked out at its ref). With
 * `action: delete` the same objects are deleted in reverse order (missing ones are fine). With
 * `prune` (what an earlier apply applied), those no longer listed are deleted after the apply,
 * when Tether still manages them (prune.executor.ts).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';
import { isManifestFileName, MAX_SOURCE_MANIFEST_BYTES, type ManifestSpec } from '../../common/specs.ts';
import { checkoutGit } from '../git/git.checkout.ts';
import { kubeMessage, kubeRejected, kubeStatus, type ObjectApi } from '../kube/kube.ts';
import { isCrd, kindsToCheck, orderForApply, orderForDelete, parseManifests, refOf, withNamespace, type AppliedRef, type KubeObject } from './manifest.plan.ts';
import { resolveInside } from '../git/paths.ts';
import { FIELD_MANAGER } from '../kube/secrets.ts';
import { checkAborted, plainLookup, type StepContext, type StepResult } from '../steps/step.ts';
import { pruneObjects } from './prune.executor.ts';

const DISCOVERY_WAIT_MS = 30_000;

/** The manifests' YAML: inline, or every *.yaml|*.yml|*.json file of the source folder (by name). */
export async function manifestText(spec: Pick<ManifestSpec, 'manifests' | 'source'>, s: StepContext): Promise<string> {
  if (spec.manifests !== undefined) return spec.manifests;
  if (!spec.source) throw new CommandFailure('invalid_spec', 'a manifest spec needs manifests or source');
  const co = await checkoutGit(spec.source.git, join(s.runDir, 'src'), { signal: s.exec.signal, emit: (l) => s.exec.emit(l) });
  checkAborted(s.exec.signal);
  const names = readdirSync(co.dir).filter(isManifestFileName).sort();
  if (names.length === 0) throw new CommandFailure('invalid_manifest', `path "${spec.source.git.path}" holds no *.yaml, *.yml or *.json file`);
  const parts: string[] = [];
  let size = 0;
  for (const name of names) {
    // Every file is resolved again: a symbolic link must not lead out of the checkout.
    const file = resolveInside(co.root, relative(co.root, join(co.dir, name)), 'any');
    if (!statSync(file).isFile()) continue;
    const text = readFileSync(file, 'utf8');
    size += Buffer.byteLength(text);
    if (size > MAX_SOURCE_MANIFEST_BYTES) throw new CommandFailure('invalid_manifest', `the manifest files of ${spec.source.git.path} are larger than ${MAX_SOURCE_MANIFEST_BYTES / 1024 / 1024} MiB together`);
    parts.push(text);
  }
  s.exec.emit(`read ${parts.length} manifest file(s) from ${spec.source.git.path}`);
  return parts.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('---\n');
}

export async function executeManifest(spec: ManifestSpec, s: StepContext): Promise<StepResult> {
  const parsed = parseManifests(await manifestText(spec, s));
  if (spec.action === 'delete') return deleteManifests(parsed, spec, s);
  const api = s.deps.kube.objects;
  await checkKinds(api, parsed, s.exec.signal);
  const objects = orderForApply(parsed);
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
      throw new CommandFailure(kubeRejected(err) ? 'kube_rejected' : 'apply_failed', `cannot apply ${what}: ${kubeMessage(err)}`, { cause: err });
    }
    s.exec.emit(`applied ${what}`);
    applied.push(ref);
    if (isCrd(obj)) await waitEstablished(api, obj, s.exec.signal);
  }
  // Pruning: what an earlier apply applied and the manifests no longer list, after the apply.
  const pruned = spec.prune ? await pruneObjects(api, spec.prune, applied, s, 'delete') : undefined;
  const outputs: Record<string, unknown> = { applied, ...(pruned ? { pruned } : {}) };
  return { outputs, lookup: plainLookup(outputs) };
}

/**
 * Deletes the objects (background propagation, no waiting for finalizers): everything else first,
 * then CRDs, then Namespaces. Objects or kinds that no longer exist count as deleted.
 */
async function deleteManifests(parsed: KubeObject[], spec: ManifestSpec, s: StepContext): Promise<StepResult> {
  const api = s.deps.kube.objects;
  const defaultNamespace = spec.namespace ?? 'default';
  const deleted: AppliedRef[] = [];
  for (const o of orderForDelete(parsed)) {
    checkAborted(s.exec.signal);
    const resource = await discover(api, o, s.exec.signal, 0);
    if (!resource) {
      s.exec.emit(`${o.kind} ${o.metadata.name}: the cluster no longer serves ${o.apiVersion} ${o.kind}; nothing to delete`);
      continue;
    }
    const obj = withNamespace(o, resource.namespaced, defaultNamespace);
    const ref = refOf(obj);
    const what = `${obj.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
    try {
      await api.delete({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } }, undefined, undefined, undefined, undefined, 'Background');
      s.exec.emit(`deleted ${what}`);
    } catch (err) {
      const status = kubeStatus(err);
      if (status === 404) s.exec.emit(`${what} does not exist`);
      else {
        throw new CommandFailure(kubeRejected(err) ? 'kube_rejected' : 'delete_failed', `cannot delete ${what}: ${kubeMessage(err)}`, { cause: err });
      }
    }
    deleted.push(ref);
  }
  const outputs: Record<string, unknown> = { deleted };
  return { outputs, lookup: plainLookup(outputs) };
}

/**
 * Every kind of the manifests, checked against discovery before anything is applied (kinds the
 * manifests' own CRDs define excepted): an unknown kind (a typo, a CRD not installed) fails at
 * once, naming its document, and nothing is applied.
 */
async function checkKinds(api: ObjectApi, objects: KubeObject[], signal: AbortSignal): Promise<void> {
  const unknown: string[] = [];
  for (const k of kindsToCheck(objects)) {
    checkAborted(signal);
    const o = { apiVersion: k.apiVersion, kind: k.kind, metadata: { name: '-' } };
    let resource = await discover(api, o, signal, 0);
    if (!resource) {
      // Discovery is cached per apiVersion: a CRD installed since may not be in the cache yet.
      api.forget(k.apiVersion);
      resource = await discover(api, o, signal, 0);
    }
    if (!resource) unknown.push(`document ${k.document}: the cluster does not serve kind ${k.kind} in ${k.apiVersion}`);
  }
  if (unknown.length) throw new CommandFailure('unknown_kind', `${unknown.join('; ')} (nothing was applied)`);
}

/**
 * The API resource of an object's kind; a kind from a CRD applied just before may take a moment.
 * With `waitMs` 0 an unknown kind is undefined at once.
 */
export async function discover(api: ObjectApi, o: KubeObject, signal: AbortSignal, waitMs: number): Promise<Awaited<ReturnType<ObjectApi['lookup']>>>;
export async function discover(api: ObjectApi, o: KubeObject, signal: AbortSignal): Promise<NonNullable<Awaited<ReturnType<ObjectApi['lookup']>>>>;
export async function discover(api: ObjectApi, o: KubeObject, signal: AbortSignal, waitMs = DISCOVERY_WAIT_MS) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let resource;
    try {
      resource = await api.lookup(o.apiVersion, o.kind);
    } catch (err) {
      if (kubeStatus(err) !== 404) throw new CommandFailure('kube_error', `cannot discover ${o.apiVersion} ${o.kind}: ${kubeMessage(err)}`, { cause: err });
    }
    if (resource) return resource;
    if (waitMs === 0) return undefined;
    if (Date.now() > deadline) throw new CommandFailure('unknown_kind', `the cluster does not serve ${o.kind} in ${o.apiVersion}`);
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
    if (Date.now() > deadline) throw new CommandFailure('apply_failed', `CustomResourceDefinition ${crd.metadata.name} was not established within ${DISCOVERY_WAIT_MS / 1000}s`);
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
