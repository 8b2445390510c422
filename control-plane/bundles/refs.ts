/**
 * The references a bundle's values, vars and outputs may hold (single-key objects), found by one
 * walker shared by validation and compilation. Pure.
 */
export const REF_KEYS = ['inputRef', 'valueRef', 'hostRef', 'secretRef', 'outputRef'] as const;
export type RefKey = (typeof REF_KEYS)[number];

export type PathSeg = string | number;

/** The reference key of a single-key `{xRef: ...}` object, if it is one. */
export function refKeyOf(v: unknown): RefKey | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1) return undefined;
  return (REF_KEYS as readonly string[]).includes(keys[0]!) ? (keys[0] as RefKey) : undefined;
}

/** Calls `visit` for every reference inside `value` (not descending into references). */
export function walkRefs(value: unknown, path: PathSeg[], visit: (key: RefKey, payload: unknown, path: PathSeg[]) => void, depth = 0): void {
  if (depth > 64) return;
  const key = refKeyOf(value);
  if (key) {
    visit(key, (value as Record<string, unknown>)[key], [...path, key]);
    return;
  }
  if (Array.isArray(value)) value.forEach((v, i) => walkRefs(v, [...path, i], visit, depth + 1));
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) walkRefs(v, [...path, k], visit, depth + 1);
  }
}

/**
 * A copy of `value` with every reference replaced by `replace(key, payload)`; a replacement of
 * `undefined` keeps the reference as it is. Objects are built with null prototypes.
 */
export function mapRefs(value: unknown, replace: (key: RefKey, payload: unknown) => unknown, depth = 0): unknown {
  if (depth > 64) throw new Error('values nested too deeply');
  const key = refKeyOf(value);
  if (key) {
    const r = replace(key, (value as Record<string, unknown>)[key]);
    return r === undefined ? structuredClone(value) : r;
  }
  if (Array.isArray(value)) return value.map((v) => mapRefs(v, replace, depth + 1));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = mapRefs(v, replace, depth + 1);
    return out;
  }
  return value;
}

/** `resources[1].values.db.password` */
export function formatPath(path: readonly PathSeg[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) s += s === '' ? seg : `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s || '(root)';
}
