/** Manifest parsing and ordering: strict YAML, bounded aliases, Namespaces and CRDs first. */
import assert from 'node:assert/strict';
import { kindsToCheck, orderForApply, parseManifests, refOf, withNamespace } from '../../cluster-agent/manifest/manifest.plan.ts';
import { TetherError } from '../../common/errors.ts';

const bad = (text: string, re: RegExp) =>
  assert.throws(() => parseManifests(text), (e: unknown) => e instanceof TetherError && e.code === 'invalid_manifest' && re.test(e.message), re.source);

describe('manifest plan', () => {
  it('orders Namespaces, then CRDs, then the rest in document order', () => {
    const objs = parseManifests([
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}',
      'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}',
      'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}',
      '',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: ns2}',
    ].join('\n---\n'));
    assert.deepEqual(orderForApply(objs).map((o) => `${o.kind}/${o.metadata.name}`), [
      'Namespace/ns1', 'Namespace/ns2', 'CustomResourceDefinition/widgets.example.com', 'ConfigMap/a', 'Widget/w', 'ConfigMap/b',
    ]);
  });

  it('gives namespaced objects the default namespace and strips it from cluster-scoped ones', () => {
    const [cm, ns] = parseManifests('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: bogus}\n');
    assert.equal(withNamespace(cm!, true, 'tenant').metadata.namespace, 'tenant');
    assert.equal(withNamespace({ ...cm!, metadata: { name: 'a', namespace: 'own' } }, true, 'tenant').metadata.namespace, 'own');
    assert.equal(withNamespace(ns!, false, 'tenant').metadata.namespace, undefined);
    assert.equal(ns!.metadata.namespace, 'bogus', 'the input object is not modified');
    assert.deepEqual(refOf(withNamespace(cm!, true, 't')), { apiVersion: 'v1', kind: 'ConfigMap', namespace: 't', name: 'a' });
  });

  it('refuses alias bombs', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    const bomb = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
    bad(bomb, /alias/i);
  });

  it('refuses what is not a Kubernetes object', () => {
    bad('- a\n- b\n', /not an object/);
    bad('kind: ConfigMap\nmetadata: {name: a}\n', /apiVersion/);
    bad('apiVersion: v1\nmetadata: {name: a}\n', /kind/);
    bad('apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n', /metadata.name/);
    bad('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "Not Valid"}\n', /namespace/);
    bad('apiVersion: v1\nkind: List\nmetadata: {name: a}\nitems: []\n', /List/);
    bad('a: 1\na: 2\n', /.+/);
    bad('key: [unclosed\n', /.+/);
    bad('---\n---\n', /no objects/);
  });

  it('lists each kind to check against discovery once, with its first document, except kinds the manifests\' own CRDs define', () => {
    const objs = parseManifests([
      'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}',
      '',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}',
      'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, names: {kind: Widget, plural: widgets}, scope: Namespaced, versions: [{name: v1, served: true, storage: true}]}',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}',
      'apiVersion: apps/v1\nkind: Deployement\nmetadata: {name: typo}',
      'apiVersion: example.com/v2\nkind: Widget\nmetadata: {name: w2}',
    ].join('\n---\n'));
    assert.deepEqual(kindsToCheck(objs), [
      { apiVersion: 'v1', kind: 'ConfigMap', document: 3 },
      { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', document: 4 },
      { apiVersion: 'apps/v1', kind: 'Deployement', document: 6 },
      { apiVersion: 'example.com/v2', kind: 'Widget', document: 7 },
    ]);
  });
});
