/**
 * Manifests as a pure plan: multi-document YAML parsed strictly (alias expansion bounded), every
 * document checked to be a Kubernetes object, ordered Namespaces first, then CRDs, then the rest
 * in document order.
 */
import { parseAllDocuments } from 'yaml';
import { CommandFailure } from '../../common/errors.ts';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** Aliases a document may expand; a "billion laughs" document exceeds this and is refused. */
export const MAX_ALIAS_COUNT = 100;
export const MAX_DOCUMENTS = 500;

const NAME_RE = /^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$/i;

/** The YAML document (1-based, empty ones counted) each parsed object came from. */
const documentNumbers = new WeakMap<KubeObject, number>();
export const documentOf = (o: KubeObject): number | undefined => documentNumbers.get(o);

export function parseManifests(text: string): KubeObject[] {
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true, strict: true });
  if (!Array.isArray(docs)) throw new CommandFailure('invalid_manifest', 'the manifests are not YAML documents');
  const out: KubeObject[] = [];
  docs.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length) throw new CommandFailure('invalid_manifest', `${where}: ${doc.errors[0]!.message}`);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      throw new CommandFailure('invalid_manifest', `${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (value === null || value === undefined) return; // an empty document (e.g. a trailing ---)
    const o = checkObject(value, where);
    documentNumbers.set(o, i + 1);
    out.push(o);
  });
  if (out.length === 0) throw new CommandFailure('invalid_manifest', 'the manifests hold no objects');
  if (out.length > MAX_DOCUMENTS) throw new CommandFailure('invalid_manifest', `more than ${MAX_DOCUMENTS} objects`);
  return out;
}

function checkObject(value: unknown, where: string): KubeObject {
  if (typeof value !== 'object' || Array.isArray(value) || value === null) throw new CommandFailure('invalid_manifest', `${where} is not an object`);
  const o = value as Record<string, unknown>;
  if (typeof o.apiVersion !== 'string' || !o.apiVersion) throw new CommandFailure('invalid_manifest', `${where} has no apiVersion`);
  if (typeof o.kind !== 'string' || !o.kind) throw new CommandFailure('invalid_manifest', `${where} has no kind`);
  if (o.kind.endsWith('List')) throw new CommandFailure('invalid_manifest', `${where}: ${o.kind} is not supported; list the items as documents`);
  const m = o.metadata as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new CommandFailure('invalid_manifest', `${where} (${o.kind}) has no metadata`);
  if (typeof m.name !== 'string' || !NAME_RE.test(m.name) || m.name.length > 253) {
    throw new CommandFailure('invalid_manifest', `${where} (${o.kind}) needs metadata.name (generateName is not supported)`);
  }
  if (m.namespace !== undefined && (typeof m.namespace !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(m.namespace))) {
    throw new CommandFailure('invalid_manifest', `${where} (${o.kind} ${m.name}) has an invalid metadata.namespace`);
  }
  return o as KubeObject;
}

export const isNamespace = (o: KubeObject) => o.kind === 'Namespace' && o.apiVersion === 'v1';
export const isCrd = (o: KubeObject) => o.kind === 'CustomResourceDefinition' && o.apiVersion.startsWith('apiextensions.k8s.io/');

/** Namespaces, then CRDs, then everything else; stable within each group. */
export function orderForApply(objects: KubeObject[]): KubeObject[] {
  const rank = (o: KubeObject) => (isNamespace(o) ? 0 : isCrd(o) ? 1 : 2);
  return objects
    .map((o, i) => ({ o, i }))
    .sort((a, b) => rank(a.o) - rank(b.o) || a.i - b.i)
    .map((x) => x.o);
}

/**
 * The object as it is applied: namespaced objects get `defaultNamespace` when they name none;
 * cluster-scoped objects lose any namespace. Pure (the scope comes from discovery).
 */
export function withNamespace(o: KubeObject, namespaced: boolean, defaultNamespace: string): KubeObject {
  const metadata = { ...o.metadata };
  if (namespaced) metadata.namespace = o.metadata.namespace ?? defaultNamespace;
  else delete metadata.namespace;
  return { ...o, metadata };
}

/** Deletion order: the reverse of {@link orderForApply} (dependents first, Namespaces last). */
export function orderForDelete(objects: KubeObject[]): KubeObject[] {
  return orderForApply(objects).reverse();
}

export interface AppliedRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export function refOf(o: KubeObject): AppliedRef {
  return { apiVersion: o.apiVersion, kind: o.kind, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}), name: o.metadata.name };
}

/** `apiVersion kind` pairs the CRDs among `objects` define (every version of each). */
export function kindsDefinedBy(objects: KubeObject[]): Set<string> {
  const out = new Set<string>();
  for (const o of objects) {
    if (!isCrd(o)) continue;
    const spec = o.spec as { group?: unknown; names?: { kind?: unknown }; versions?: { name?: unknown }[] } | undefined;
    if (typeof spec?.group !== 'string' || typeof spec.names?.kind !== 'string' || !Array.isArray(spec.versions)) continue;
    for (const v of spec.versions) if (typeof v?.name === 'string') out.add(`${spec.group}/${v.name} ${spec.names.kind}`);
  }
  return out;
}

export interface KindToCheck {
  apiVersion: string;
  kind: string;
  /** The first document of that kind. */
  document: number;
}

/**
 * The kinds to check against the cluster's discovery before anything is applied: every
 * apiVersion/kind of the manifests once (its first document), except those a CRD of the same
 * manifests defines (CRDs are applied first and waited for).
 */
export function kindsToCheck(objects: KubeObject[]): KindToCheck[] {
  const defined = kindsDefinedBy(objects);
  const seen = new Set<string>();
  const out: KindToCheck[] = [];
  objects.forEach((o, i) => {
    const key = `${o.apiVersion} ${o.kind}`;
    if (defined.has(key) || seen.has(key)) return;
    seen.add(key);
    out.push({ apiVersion: o.apiVersion, kind: o.kind, document: documentOf(o) ?? i + 1 });
  });
  return out;
}
