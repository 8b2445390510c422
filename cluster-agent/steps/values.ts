/**
 * Pure helpers for user-given value trees (helm values, tofu vars): deep merge and reference
 * resolution. Every object built here has a null prototype, and the keys `__proto__`,
 * `constructor` and `prototype` are refused, so no input can reach Object.prototype.
 */
import { CommandFailure } from '../../common/errors.ts';
import { isOutputRef, isSecretRef, type OutputRef, type SecretRef } from '../../common/specs.ts';

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
const MAX_DEPTH = 64;

export type Tree = unknown;

export interface RefResolvers {
  secret(ref: SecretRef): Promise<string>;
  output(ref: OutputRef): Promise<unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKey(key: string): void {
  if (FORBIDDEN.has(key)) throw new CommandFailure('invalid_values', `key "${key}" is not allowed in values`);
}

/** Own enumerable keys, plus a literal "__proto__" own property (JSON.parse creates one). */
function keysOf(o: object): string[] {
  return Object.getOwnPropertyNames(o).filter((k) => k === '__proto__' || Object.prototype.propertyIsEnumerable.call(o, k));
}

/** A deep copy of a JSON-like value with null-prototype objects; refuses forbidden keys. */
export function cloneTree(value: Tree, depth = 0): Tree {
  if (depth > MAX_DEPTH) throw new CommandFailure('invalid_values', `values nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((v) => cloneTree(v, depth + 1));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = Object.create(null);
    for (const k of keysOf(value)) {
      checkKey(k);
      out[k] = cloneTree(value[k], depth + 1);
    }
    return out;
  }
  return value;
}

/**
 * Deep-merges layers left to right: objects merge key by key, anything else (arrays, scalars,
 * null) in a later layer replaces what was there. Inputs are not modified.
 */
export function deepMerge(...layers: Tree[]): Record<string, unknown> {
  let out: Record<string, unknown> = Object.create(null);
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (!isPlainObject(layer)) throw new CommandFailure('invalid_values', 'values must be an object');
    out = mergeInto(out, layer, 0);
  }
  return out;
}

function mergeInto(base: Record<string, unknown>, over: Record<string, unknown>, depth: number): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw new CommandFailure('invalid_values', `values nested deeper than ${MAX_DEPTH} levels`);
  const out: Record<string, unknown> = Object.create(null);
  for (const k of keysOf(base)) out[k] = base[k];
  for (const k of keysOf(over)) {
    checkKey(k);
    const b = out[k];
    const o = over[k];
    out[k] = isPlainObject(b) && isPlainObject(o) ? mergeInto(b, o, depth + 1) : cloneTree(o, depth + 1);
  }
  return out;
}

/** Replaces every {secretRef} and {outputRef} in a tree by its value (a fresh null-prototype tree). */
export async function resolveRefs(value: Tree, r: RefResolvers, depth = 0): Promise<Tree> {
  if (depth > MAX_DEPTH) throw new CommandFailure('invalid_values', `values nested deeper than ${MAX_DEPTH} levels`);
  if (isSecretRef(value)) return r.secret(value.secretRef);
  if (isOutputRef(value)) return cloneTree(await r.output(value.outputRef));
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const v of value) out.push(await resolveRefs(v, r, depth + 1));
    return out;
  }
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = Object.create(null);
    for (const k of keysOf(value)) {
      checkKey(k);
      out[k] = await resolveRefs(value[k], r, depth + 1);
    }
    return out;
  }
  return value;
}
