/**
 * The cluster agent's additions for bundles, as pure functions: the delete action of helm, tofu
 * and manifest specs, and manifest specs from a git folder (schema: exactly one source).
 */
import assert from 'node:assert/strict';
import { manifestSpecSchema, helmSpecSchema, tofuSpecSchema, flowSpecSchema, isManifestFileName } from '../../common/specs.ts';
import { planHelmUninstall } from '../../cluster-agent/helm/helm.plan.ts';
import { tofuDestroyArgs } from '../../cluster-agent/tofu/tofu.plan.ts';
import { orderForApply, orderForDelete, type KubeObject } from '../../cluster-agent/manifest/manifest.plan.ts';

const git = { url: 'file:///srv/repo.git', ref: 'a'.repeat(40), path: 'bundles/web/manifests' };

describe('bundle actions in specs and agent plans', () => {
  it('manifest specs take exactly one of manifests and source', () => {
    assert.ok(manifestSpecSchema.safeParse({ manifests: 'kind: x' }).success);
    assert.ok(manifestSpecSchema.safeParse({ source: { git }, namespace: 'web-abcde' }).success);
    const both = manifestSpecSchema.safeParse({ manifests: 'kind: x', source: { git } });
    assert.ok(!both.success);
    assert.match(both.error.issues[0]!.message, /exactly one of manifests and source/);
    assert.ok(!manifestSpecSchema.safeParse({}).success);
    assert.ok(!manifestSpecSchema.safeParse({ source: { git: { ...git, path: '../etc' } } }).success);
  });

  it('action is apply or delete, optional, on helm, manifest and tofu specs', () => {
    const helm = { release: 'web', namespace: 'web-abcde', chart: { git } };
    assert.ok(helmSpecSchema.safeParse({ ...helm, action: 'delete' }).success);
    assert.equal(helmSpecSchema.parse(helm).action, undefined);
    assert.ok(!helmSpecSchema.safeParse({ ...helm, action: 'destroy' }).success);
    assert.ok(tofuSpecSchema.safeParse({ source: { git }, stateName: 'db', action: 'delete' }).success);
    assert.ok(manifestSpecSchema.safeParse({ source: { git }, action: 'delete' }).success);
    assert.ok(flowSpecSchema.safeParse({ steps: [{ name: 'a', type: 'helm', spec: { ...helm, action: 'delete' } }] }).success);
  });

  it('helm delete is an uninstall that tolerates a missing release; the release name comes after --', () => {
    const args = planHelmUninstall({ spec: helmSpecSchema.parse({ release: 'web', namespace: 'web-abcde', chart: { git }, action: 'delete' }), kubeconfig: '/k' });
    assert.deepEqual(args, ['uninstall', '--namespace=web-abcde', '--kubeconfig=/k', '--ignore-not-found', '--', 'web']);
  });

  it('tofu delete is a destroy with the same var file', () => {
    assert.deepEqual(tofuDestroyArgs('/run/vars.json'), ['destroy', '-auto-approve', '-input=false', '-no-color', '-var-file=/run/vars.json']);
    assert.deepEqual(tofuDestroyArgs(), ['destroy', '-auto-approve', '-input=false', '-no-color']);
  });

  it('manifests are deleted in the reverse of the apply order (namespaces last)', () => {
    const o = (kind: string, name: string, apiVersion = 'v1'): KubeObject => ({ apiVersion, kind, metadata: { name } });
    const objs = [o('ConfigMap', 'a'), o('Namespace', 'ns'), o('CustomResourceDefinition', 'crd', 'apiextensions.k8s.io/v1'), o('Service', 'b')];
    assert.deepEqual(orderForApply(objs).map((x) => x.metadata.name), ['ns', 'crd', 'a', 'b']);
    assert.deepEqual(orderForDelete(objs).map((x) => x.metadata.name), ['b', 'a', 'crd', 'ns']);
  });

  it('a manifest folder is read for its *.yaml, *.yml and *.json files only', () => {
    assert.deepEqual(['a.yaml', 'b.yml', 'c.json', 'README.md', '.hidden.yaml', 'd.YAML', 'e.tpl'].filter(isManifestFileName), ['a.yaml', 'b.yml', 'c.json', 'd.YAML']);
  });
});
