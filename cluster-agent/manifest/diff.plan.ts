/**
 * Drift of manifests as a pure plan. Only the fields Tether's field manager owns count: those
 * owned in the live object (what Tether applied) and those it would own after the apply (the
 * server-side-apply dry run's managedFields: a field another manager took over). Both the dry
 * run and the live object are projected onto that field set and compared; fields set by
 * controllers, defaulting or other managers are outside it and never drift.
 *
 * managedFields' `fieldsV1` is a tree of keys: `f:<name>` a field, `k:<json>` a list element by
 * its key fields, `v:<json>` a set element by value, `i:<n>` a list element by index, `.` the
 * element itself. An empty tree below a key owns the whole value.
 *
 * Secrets: `stringData` is owned but never stored (the API server merges it into `data`), so
 * owned `stringData` keys count as owned `data` keys, and a Secret's diff names changed keys only,
 * never a value.
 */
import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';

/** A parsed fieldsV1 tree: each key to its children (empty: the whole value). */
export type FieldSet = Map<string, FieldSet>;

/** `prune`: an object an earlier apply applied that the desired state no longer lists (it would be deleted). */
export type DiffStatus = 'in-sync' | 'drifted' | 'missing' | 'error' | 'prune';

export interface DiffResource {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  status: DiffStatus;
  /** A unified diff of the owned fields as YAML (`-` live, `+` desired); a Secret's names keys only. */
  diff?: string;
  error?: string;
}

export interface DiffSummary {
  inSync: number;
  drifted: number;
  missing: number;
  error: number;
}

/** Deepest fieldsV1 tree parsed (real objects stay far below this). */
const MAX_FIELD_DEPTH = 64;
/** Lines of either side beyond which the diff is shown as a whole replacement (the LCS is quadratic). */
const MAX_DIFF_LINES = 3000;
const CONTEXT = 3;

/** Parses one `fieldsV1` value; anything that is not a tree of objects is ignored. */
export function parseFieldsV1(v: unknown, depth = 0): FieldSet {
  const out: FieldSet = new Map();
  if (depth > MAX_FIELD_DEPTH || typeof v !== 'object' || v === null || Array.isArray(v)) return out;
  for (const [k, child] of Object.entries(v)) out.set(k, parseFieldsV1(child, depth + 1));
  return out;
}

export function mergeFieldSets(a: FieldSet, b: FieldSet): FieldSet {
  const out: FieldSet = new Map(a);
  for (const [k, child] of b) out.set(k, out.has(k) ? mergeFieldSets(out.get(k)!, child) : child);
  return out;
}

interface ManagedFieldsEntry {
  manager?: unknown;
  operation?: unknown;
  fieldsType?: unknown;
  fieldsV1?: unknown;
}

/**
 * The fields `manager` owns in an object's `metadata.managedFields` through the given operations
 * (apply only by default: Tether's server-side apply; helm 3 writes with client-side `Update`s).
 */
export function ownedFields(obj: unknown, manager: string, operations: readonly string[] = ['Apply']): FieldSet {
  const entries = (obj as { metadata?: { managedFields?: unknown } } | undefined)?.metadata?.managedFields;
  let out: FieldSet = new Map();
  if (!Array.isArray(entries)) return out;
  for (const e of entries as ManagedFieldsEntry[]) {
    if (e?.manager !== manager || !operations.includes(e.operation as string) || (e.fieldsType !== undefined && e.fieldsType !== 'FieldsV1')) continue;
    out = mergeFieldSets(out, parseFieldsV1(e.fieldsV1));
  }
  return out;
}

/** A field set without `.` (the element itself): the keys that select values. */
function selecting(set: FieldSet): [string, FieldSet][] {
  return [...set].filter(([k]) => k !== '.');
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

function matchesKey(element: unknown, key: unknown): boolean {
  if (typeof key !== 'object' || key === null || typeof element !== 'object' || element === null) return false;
  return Object.entries(key).every(([k, v]) => isDeepStrictEqual((element as Record<string, unknown>)[k], v));
}

/**
 * The part of `value` that `set` selects (undefined: nothing). An empty set, or one holding only
 * `.`, selects the whole value.
 */
export function project(value: unknown, set: FieldSet): unknown {
  const keys = selecting(set);
  if (keys.length === 0) return value;
  if (Array.isArray(value)) {
    const picked: unknown[] = [];
    value.forEach((el, i) => {
      for (const [k, child] of keys) {
        const hit =
          (k.startsWith('k:') && matchesKey(el, parseJson(k.slice(2)))) ||
          (k.startsWith('v:') && isDeepStrictEqual(el, parseJson(k.slice(2)))) ||
          (k.startsWith('i:') && Number(k.slice(2)) === i);
        if (hit) {
          picked.push(project(el, child));
          return;
        }
      }
    });
    return picked.length ? picked : undefined;
  }
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, child] of keys) {
      if (!k.startsWith('f:')) continue;
      const name = k.slice(2);
      if (!Object.hasOwn(value, name)) continue;
      const p = project((value as Record<string, unknown>)[name], child);
      if (p !== undefined) out[name] = p;
    }
    return Object.keys(out).length ? out : undefined;
  }
  // A scalar where the set expects structure: the scalar itself is what is there.
  return value;
}

const isSecret = (o: { apiVersion?: unknown; kind?: unknown }) => o.kind === 'Secret' && o.apiVersion === 'v1';

/** Owned `stringData` keys are owned `data` keys (stored only there). */
function secretFieldSet(set: FieldSet): FieldSet {
  const stringData = set.get('f:stringData');
  if (!stringData) return set;
  const out: FieldSet = new Map(set);
  out.delete('f:stringData');
  out.set('f:data', mergeFieldSets(out.get('f:data') ?? new Map(), stringData));
  return out;
}

/** The owned fields of one side, ready to compare and print (managedFields and status never count). */
function ownedView(obj: unknown, set: FieldSet): Record<string, unknown> {
  const p = (project(obj, set) ?? {}) as Record<string, unknown>;
  const meta = p.metadata as Record<string, unknown> | undefined;
  if (meta) {
    delete meta.managedFields;
    delete meta.resourceVersion;
    if (Object.keys(meta).length === 0) delete p.metadata;
  }
  return p;
}

export interface Verdict {
  status: 'in-sync' | 'drifted';
  diff?: string;
}

/**
 * The verdict for one object that exists: the dry run (`desired`, what the apply would leave)
 * against `live`, on the fields `manager` owns in either.
 */
export function diffObject(desired: unknown, live: unknown, manager: string, operations?: readonly string[]): Verdict {
  let set = mergeFieldSets(ownedFields(live, manager, operations), ownedFields(desired, manager, operations));
  const secret = isSecret((desired ?? {}) as Record<string, unknown>);
  if (secret) set = secretFieldSet(set);
  const want = ownedView(desired, set);
  const have = ownedView(live, set);
  if (isDeepStrictEqual(want, have)) return { status: 'in-sync' };
  return { status: 'drifted', diff: secret ? secretDiff(want, have) : unifiedDiff(toYaml(have), toYaml(want)) };
}

/** A Secret's drift: its other owned fields as a diff, its data as key names with what changed. */
function secretDiff(want: Record<string, unknown>, have: Record<string, unknown>): string {
  const wantData = (want.data ?? {}) as Record<string, unknown>;
  const haveData = (have.data ?? {}) as Record<string, unknown>;
  const rest = (o: Record<string, unknown>) => toYaml(Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'data' && k !== 'stringData')));
  const lines: string[] = [];
  const restWant = rest(want);
  const restHave = rest(have);
  if (restWant !== restHave) lines.push(unifiedDiff(restHave, restWant).trimEnd());
  for (const key of [...new Set([...Object.keys(haveData), ...Object.keys(wantData)])].sort()) {
    if (!Object.hasOwn(haveData, key)) lines.push(`data.${key}: (missing in the cluster)`);
    else if (!Object.hasOwn(wantData, key)) lines.push(`data.${key}: (not in the manifest)`);
    else if (!isDeepStrictEqual(haveData[key], wantData[key])) lines.push(`data.${key}: (changed)`);
  }
  return `${lines.join('\n')}\n`;
}

export function toYaml(v: unknown): string {
  return stringify(v, { sortMapEntries: true, lineWidth: 0 });
}

type Op = { t: ' ' | '-' | '+'; line: string };

function lineOps(a: string[], b: string[]): Op[] {
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES) return [...a.map((line) => ({ t: '-' as const, line })), ...b.map((line) => ({ t: '+' as const, line }))];
  // Longest common subsequence, table from the end.
  const n = a.length;
  const m = b.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({ t: ' ', line: a[i]! });
      i++;
      j++;
    } else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) ops.push({ t: '-', line: a[i++]! });
    else ops.push({ t: '+', line: b[j++]! });
  }
  while (i < n) ops.push({ t: '-', line: a[i++]! });
  while (j < m) ops.push({ t: '+', line: b[j++]! });
  return ops;
}

/** A unified diff (`--- live`, `+++ desired`, hunks with 3 lines of context); empty when equal. */
export function unifiedDiff(live: string, desired: string): string {
  const split = (s: string) => (s === '' ? [] : s.replace(/\n$/, '').split('\n'));
  const ops = lineOps(split(live), split(desired));
  if (ops.every((o) => o.t === ' ')) return '';
  const out = ['--- live', '+++ desired'];
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.t === ' ') {
      k++;
      continue;
    }
    // A hunk: from CONTEXT lines before this change to CONTEXT lines after the last change
    // that is at most 2*CONTEXT unchanged lines from the next.
    const start = Math.max(0, k - CONTEXT);
    let end = k;
    for (let gap = 0, x = k; x < ops.length; x++) {
      if (ops[x]!.t === ' ') {
        if (++gap > 2 * CONTEXT) break;
      } else {
        gap = 0;
        end = x;
      }
    }
    const stop = Math.min(ops.length, end + 1 + CONTEXT);
    let aStart = 1;
    let bStart = 1;
    for (let x = 0; x < start; x++) {
      if (ops[x]!.t !== '+') aStart++;
      if (ops[x]!.t !== '-') bStart++;
    }
    const hunk = ops.slice(start, stop);
    const aLen = hunk.filter((o) => o.t !== '+').length;
    const bLen = hunk.filter((o) => o.t !== '-').length;
    out.push(`@@ -${aLen ? aStart : aStart - 1},${aLen} +${bLen ? bStart : bStart - 1},${bLen} @@`);
    for (const o of hunk) out.push(`${o.t}${o.line}`);
    k = stop;
  }
  return `${out.join('\n')}\n`;
}

export function summarize(resources: readonly { status: DiffStatus }[]): DiffSummary {
  const s: DiffSummary = { inSync: 0, drifted: 0, missing: 0, error: 0 };
  for (const r of resources) {
    if (r.status === 'in-sync') s.inSync++;
    else if (r.status === 'drifted' || r.status === 'prune') s.drifted++;
    else if (r.status === 'missing') s.missing++;
    else s.error++;
  }
  return s;
}
