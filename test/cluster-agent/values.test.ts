/** Values merging and reference resolution: deep merge semantics, and no prototype pollution. */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cloneTree, deepMerge, resolveRefs } from '../../cluster-agent/steps/values.ts';
import { TetherError } from '../../common/errors.ts';

const plain = (v: unknown) => JSON.parse(JSON.stringify(v));
const noRefs = { secret: async () => assert.fail('no secret expected'), output: async () => assert.fail('no output expected') };

describe('values', () => {
  afterEach(() => {
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype was polluted');
  });

  it('merges objects key by key; arrays and scalars replace', () => {
    const out = deepMerge({ a: { b: 1, c: [1, 2] }, d: 'x' }, { a: { c: [3], e: null }, f: true });
    assert.deepEqual(plain(out), { a: { b: 1, c: [3], e: null }, d: 'x', f: true });
  });

  it('does not modify its inputs', () => {
    const base = { a: { b: 1 } };
    const over = { a: { c: 2 } };
    deepMerge(base, over);
    assert.deepEqual(base, { a: { b: 1 } });
    assert.deepEqual(over, { a: { c: 2 } });
  });

  it('refuses __proto__, constructor and prototype keys, including JSON-parsed own __proto__', () => {
    for (const bad of [
      JSON.parse('{"__proto__": {"polluted": "yes"}}'),
      JSON.parse('{"a": {"__proto__": {"polluted": "yes"}}}'),
      { constructor: { prototype: { polluted: 'yes' } } },
      { a: [{ prototype: 1 }] },
    ]) {
      assert.throws(() => deepMerge({}, bad), (e: unknown) => e instanceof TetherError && e.code === 'invalid_values');
      assert.throws(() => cloneTree(bad), TetherError);
    }
  });

  it('builds null-prototype objects', () => {
    const out = deepMerge({ a: { b: 1 } });
    assert.equal(Object.getPrototypeOf(out), null);
    assert.equal(Object.getPrototypeOf(out.a), null);
    assert.equal(JSON.stringify(out), '{"a":{"b":1}}');
  });

  it('merging any JSON objects equals a reference merge and never pollutes (property)', () => {
    const ref = (a: unknown, b: unknown): unknown => {
      if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
        const out: Record<string, unknown> = { ...(a as object) };
        for (const [k, v] of Object.entries(b)) out[k] = ref((a as Record<string, unknown>)[k], v);
        return out;
      }
      return b;
    };
    const key = fc.string({ maxLength: 6 }).filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k));
    const safe = fc.jsonValue({ maxDepth: 3 }).filter((v) => !/"(__proto__|constructor|prototype)":/.test(JSON.stringify(v)));
    const obj = fc.dictionary(key, safe, { maxKeys: 5 });
    fc.assert(fc.property(obj, obj, (a, b) => {
      assert.deepEqual(plain(deepMerge(a, b)), plain(ref(a, b)));
    }));
  });

  it('resolves secret and output references anywhere in the tree', async () => {
    const out = await resolveRefs(
      { db: { password: { secretRef: { name: 's', key: 'pw' } }, hosts: [{ outputRef: { step: 'infra', key: 'host' } }] }, plain: 1 },
      { secret: async (r) => `secret:${r.name}/${r.key}`, output: async (r) => ({ from: `${r.step}.${r.key}` }) },
    );
    assert.deepEqual(plain(out), { db: { password: 'secret:s/pw', hosts: [{ from: 'infra.host' }] }, plain: 1 });
  });

  it('resolution refuses forbidden keys too', async () => {
    await assert.rejects(resolveRefs(JSON.parse('{"x": {"__proto__": {"polluted": 1}}}'), noRefs), TetherError);
  });
});
