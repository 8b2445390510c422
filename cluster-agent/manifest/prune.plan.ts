/**
 * Pruning inside a manifest resource, the pure part: which objects an earlier apply applied
 * that the manifests no longer list (by API group, kind, namespace and name: a new apiVersion of
 * the same group is the same object), in deletion order; and whether a live object is one that
 * Tether manages (Tether's field manager holds fields of it), the only ones ever deleted.
 */
import { orderForDelete, type AppliedRef, type KubeObject } from './manifest.plan.ts';

const groupOf = (apiVersion: string) => (apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '');
export const objectKey = (r: AppliedRef) => `${groupOf(r.apiVersion)}|${r.kind}|${r.namespace ?? ''}|${r.name}`;

/** The earlier objects not among `current`, once each, in deletion order (the reverse of apply order). */
export function prunable(previous: readonly AppliedRef[], current: readonly AppliedRef[]): AppliedRef[] {
  const keep = new Set(current.map(objectKey));
  const seen = new Set<string>();
  const objects: KubeObject[] = [];
  for (const r of previous) {
    const k = objectKey(r);
    if (keep.has(k) || seen.has(k)) continue;
    seen.add(k);
    objects.push({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } });
  }
  return orderForDelete(objects).map((o) => ({ apiVersion: o.apiVersion, kind: o.kind, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}), name: o.metadata.name }));
}

/** Whether `manager` (Tether's field manager) holds any field of the live object. */
export function managedBy(live: unknown, manager: string): boolean {
  const entries = (live as { metadata?: { managedFields?: unknown } } | null)?.metadata?.managedFields;
  return Array.isArray(entries) && entries.some((e) => (e as { manager?: unknown } | null)?.manager === manager);
}
