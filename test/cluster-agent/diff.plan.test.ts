/** The manifest diff plan: managedFields parsing, projection on owned fields, verdicts, Secrets, the spec. */
import assert from 'node:assert/strict';
import { diffObject, ownedFields, parseFieldsV1, project, summarize, unifiedDiff } from '../../cluster-agent/manifest/diff.plan.ts';
import { parseSpec } from '../../common/specs.ts';

const mf = (manager: string, fieldsV1: unknown, operation = 'Apply') => ({ manager, operation, apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1 });

/** A Deployment as the API server returns it: Tether owns replicas, a label, the container's image. */
function deployment(over: { replicas?: number; image?: string; extraLabel?: string; managedFields?: unknown[]; status?: unknown } = {}) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      namespace: 'tenant',
      resourceVersion: '42',
      generation: 3,
      labels: { app: 'web', ...(over.extraLabel ? { extra: over.extraLabel } : {}) },
      managedFields: over.managedFields ?? [
        mf('tether', { 'f:metadata': { 'f:labels': { 'f:app': {} } }, 'f:spec': { 'f:replicas': {}, 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { '.': {}, 'f:name': {}, 'f:image': {} } } } } } }),
        mf('kube-controller-manager', { 'f:status': { 'f:replicas': {} } }, 'Update'),
      ],
    },
    spec: {
      replicas: over.replicas ?? 2,
      template: { spec: { containers: [{ name: 'app', image: over.image ?? 'nginx:1', terminationMessagePath: '/dev/termination-log' }, { name: 'sidecar', image: 'other:1' }] } },
    },
    status: over.status ?? { replicas: 2 },
  };
}

describe('manifest diff plan', () => {
  it('parses fieldsV1 trees and keeps only the apply entries of the manager', () => {
    const set = parseFieldsV1({ 'f:data': { '.': {}, 'f:a': {} }, 'f:x': 'not an object' });
    assert.deepEqual([...set.keys()], ['f:data', 'f:x']);
    assert.deepEqual([...set.get('f:data')!.keys()], ['.', 'f:a']);
    assert.equal(set.get('f:x')!.size, 0);
    const owned = ownedFields(deployment(), 'tether');
    assert.deepEqual([...owned.keys()], ['f:metadata', 'f:spec']);
    assert.equal(ownedFields(deployment(), 'kube-controller-manager').size, 0, 'Update entries are not apply ownership');
    assert.equal(ownedFields({ metadata: {} }, 'tether').size, 0);
    assert.equal(ownedFields({ metadata: { managedFields: 'junk' } }, 'tether').size, 0);
  });

  it('projects a value onto a field set: fields, keyed list elements, set values, indexes', () => {
    const set = parseFieldsV1({
      'f:a': {},
      'f:list': { 'k:{"name":"x"}': { '.': {}, 'f:v': {} } },
      'f:set': { 'v:"b"': {} },
      'f:arr': { 'i:1': {} },
      'f:gone': {},
    });
    const value = { a: { deep: 1 }, b: 'not owned', list: [{ name: 'y', v: 1 }, { name: 'x', v: 2, extra: 3 }], set: ['a', 'b'], arr: [10, 20] };
    assert.deepEqual(project(value, set), { a: { deep: 1 }, list: [{ v: 2 }], set: ['b'], arr: [20] });
    assert.equal(project({}, set), undefined);
  });

  it('is in sync when only fields Tether does not own differ (controllers, defaults, other managers)', () => {
    const live = deployment({ extraLabel: 'from-someone-else', status: { replicas: 0 } });
    live.spec.template.spec.containers[1]!.image = 'other:2';
    assert.deepEqual(diffObject(deployment(), live, 'tether'), { status: 'in-sync' });
  });

  it('reports an owned field changed as drift, with a unified diff naming it', () => {
    const v = diffObject(deployment({ replicas: 2 }), deployment({ replicas: 5 }), 'tether');
    assert.equal(v.status, 'drifted');
    assert.match(v.diff!, /^--- live\n\+\+\+ desired\n@@ /);
    assert.match(v.diff!, /^-  replicas: 5$/m);
    assert.match(v.diff!, /^\+  replicas: 2$/m);
    assert.doesNotMatch(v.diff!, /sidecar|terminationMessagePath|resourceVersion|managedFields/, 'only owned fields are shown');
  });

  it('sees a field another manager took over (it left Tether\'s set in the live object) through the dry run\'s set', () => {
    const live = deployment({
      image: 'nginx:hacked',
      managedFields: [
        mf('tether', { 'f:metadata': { 'f:labels': { 'f:app': {} } }, 'f:spec': { 'f:replicas': {} } }),
        mf('kubectl-edit', { 'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { 'f:image': {} } } } } } }, 'Update'),
      ],
    });
    const v = diffObject(deployment(), live, 'tether');
    assert.equal(v.status, 'drifted');
    assert.match(v.diff!, /^-\s+- image: nginx:hacked$/m);
    assert.match(v.diff!, /^\+\s+- image: nginx:1$/m);
  });

  it('reports a Secret\'s changed, missing and extra keys by name, never a value', () => {
    const secret = (data: Record<string, string>, owned: Record<string, unknown>) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'tenant', managedFields: [mf('tether', owned)] },
      type: 'Opaque',
      data,
    });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    // stringData is owned but stored in data: its keys count as data keys.
    const desired = secret({ password: b64('desired-value'), token: b64('same'), added: b64('new-value') }, { 'f:stringData': { 'f:password': {}, 'f:added': {} }, 'f:data': { 'f:token': {} }, 'f:type': {} });
    const live = secret({ password: b64('canary-value'), token: b64('same'), removed: b64('old-value') }, { 'f:stringData': { 'f:password': {}, 'f:removed': {} }, 'f:data': { 'f:token': {} }, 'f:type': {} });
    const v = diffObject(desired, live, 'tether');
    assert.equal(v.status, 'drifted');
    assert.equal(v.diff, 'data.added: (missing in the cluster)\ndata.password: (changed)\ndata.removed: (not in the manifest)\n');
    for (const value of ['desired-value', 'canary-value', 'new-value', 'old-value', 'same']) {
      assert.ok(!v.diff!.includes(value) && !v.diff!.includes(b64(value)), `no value in the diff (${value})`);
    }
    assert.deepEqual(diffObject(live, live, 'tether'), { status: 'in-sync' });
  });

  it('writes unified diffs with hunks and context', () => {
    assert.equal(unifiedDiff('a\nb\n', 'a\nb\n'), '');
    const live = Array.from({ length: 20 }, (_, i) => `line${i}`);
    const desired = [...live];
    desired[2] = 'changed2';
    desired[17] = 'changed17';
    assert.equal(unifiedDiff(`${live.join('\n')}\n`, `${desired.join('\n')}\n`), [
      '--- live', '+++ desired',
      '@@ -1,6 +1,6 @@', ' line0', ' line1', '-line2', '+changed2', ' line3', ' line4', ' line5',
      '@@ -15,6 +15,6 @@', ' line14', ' line15', ' line16', '-line17', '+changed17', ' line18', ' line19',
      '',
    ].join('\n'));
    assert.equal(unifiedDiff('', 'a: 1\n'), '--- live\n+++ desired\n@@ -0,0 +1,1 @@\n+a: 1\n');
  });

  it('counts verdicts', () => {
    assert.deepEqual(summarize([{ status: 'in-sync' }, { status: 'drifted' }, { status: 'drifted' }, { status: 'missing' }, { status: 'error' }]), { inSync: 1, drifted: 2, missing: 1, error: 1 });
  });

  it('takes {target: manifest, spec} with exactly one of manifests and source, and no action', () => {
    assert.ok(parseSpec('diff', { target: 'manifest', spec: { manifests: 'apiVersion: v1', namespace: 'a' } }).success);
    assert.ok(parseSpec('diff', { target: 'manifest', spec: { source: { git: { url: 'https://example.com/r.git', ref: 'main' } } } }).success);
    assert.equal(parseSpec('diff', { target: 'manifest', spec: {} }).success, false);
    assert.equal(parseSpec('diff', { target: 'manifest', spec: { manifests: 'x', action: 'delete' } }).success, false);
    assert.equal(parseSpec('diff', { target: 'helm', spec: {} }).success, false);
    assert.equal(parseSpec('diff', { manifests: 'x' }).success, false);
    assert.equal(parseSpec('diff', { target: 'manifest', spec: { manifests: 'x'.repeat(1024 * 1024 + 1) } }).success, false, 'the inline limit of manifest specs');
    assert.ok(parseSpec('manifest', { action: 'delete', manifests: 'x' }).success, 'the manifest spec is unchanged');
  });
});
