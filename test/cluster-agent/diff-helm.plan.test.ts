/** The helm diff as a pure plan: the template arguments, helm history read down to revisions, the release verdict, helm's field ownership. */
import assert from 'node:assert/strict';
import { diffSpecSchema } from '../../common/specs.ts';
import { HELM_FIELD_MANAGER, HELM_OWNED_OPERATIONS, isReleaseNotFound, parseHistoryDescriptions, planHelmTemplate, releaseVerdict } from '../../cluster-agent/helm/diff.plan.ts';
import { planHelmUpgrade, TETHER_HELM_DESCRIPTION } from '../../cluster-agent/helm/helm.plan.ts';
import { diffObject } from '../../cluster-agent/manifest/diff.plan.ts';

const rel = { namespace: 'apps', name: 'web' };
const h = (revision: number, status: string, description: string) => ({ revision, status, description });

describe('helm diff plan', () => {
  it('renders with the chart and values arguments of the upgrade, hooks and tests left out', () => {
    const spec = { release: 'web', namespace: 'apps', chart: { repo: 'https://charts.example.com', name: 'nginx', version: '1.2.3' } };
    assert.deepEqual(planHelmTemplate({ spec, kubeConfig: '/k', valuesFile: '/run/values.json' }), [
      'template', '--namespace=apps', '--kubeconfig=/k', '--no-hooks', '--skip-tests', '--repo=https://charts.example.com', '--version=1.2.3', '--values=/run/values.json', '--', 'web', 'nginx',
    ]);
    const git = { release: 'a', namespace: 'b', chart: { git: { url: 'file:///r.git', ref: 'main', path: 'c' } } };
    assert.deepEqual(planHelmTemplate({ spec: git, kubeConfig: '/k', chartPath: '/src' }).slice(-3), ['--', 'a', '/src']);
  });

  it('Tether marks every revision it makes', () => {
    const args = planHelmUpgrade({ spec: { release: 'web', namespace: 'apps', chart: { oci: 'oci://r.example/c' } }, kubeconfig: '/k' });
    assert.ok(args.includes(`--description=${TETHER_HELM_DESCRIPTION}`));
  });

  it('reads helm history down to revision, status and description', () => {
    const out = JSON.stringify([
      { revision: 1, updated: 'x', status: 'superseded', chart: 'hello-0.1.0', app_version: '1.0', description: TETHER_HELM_DESCRIPTION },
      { revision: 2, status: 'deployed', description: 'Rollback to 1' },
      { revision: 'x' },
    ]);
    assert.deepEqual(parseHistoryDescriptions(out), [h(1, 'superseded', TETHER_HELM_DESCRIPTION), h(2, 'deployed', 'Rollback to 1')]);
    assert.throws(() => parseHistoryDescriptions('nope'), /did not print JSON/);
    assert.throws(() => parseHistoryDescriptions('{}'), /did not print a list/);
    assert.ok(isReleaseNotFound('Error: release: not found'));
    assert.ok(!isReleaseNotFound('Error: Kubernetes cluster unreachable'));
  });

  it('says whether the release is missing, not deployed, or deployed by someone other than Tether', () => {
    const base = { apiVersion: 'helm.sh/v3', kind: 'Release', namespace: 'apps', name: 'web' };
    assert.deepEqual(releaseVerdict(rel, 'missing'), { ...base, status: 'missing' });
    assert.deepEqual(releaseVerdict(rel, []), { ...base, status: 'missing' });
    assert.deepEqual(releaseVerdict(rel, [h(1, 'superseded', TETHER_HELM_DESCRIPTION), h(2, 'deployed', TETHER_HELM_DESCRIPTION)]), { ...base, status: 'in-sync', revision: 2 });
    assert.deepEqual(releaseVerdict(rel, [h(3, 'deployed', 'Rollback to 1'), h(2, 'superseded', TETHER_HELM_DESCRIPTION)]), {
      ...base, status: 'drifted', revision: 3, diff: 'the deployed revision 3 was not made by Tether (Rollback to 1)\n',
    });
    assert.deepEqual(releaseVerdict(rel, [h(1, 'deployed', 'Upgrade complete')]).status, 'drifted', 'a hand-run upgrade');
    assert.deepEqual(releaseVerdict(rel, [h(1, 'deployed', TETHER_HELM_DESCRIPTION), h(2, 'failed', 'Upgrade "web" failed: boom')]), {
      ...base, status: 'drifted', revision: 2, diff: 'the release is failed (revision 2: Upgrade "web" failed: boom)\n',
    });
    assert.equal(releaseVerdict(rel, [h(4, 'pending-upgrade', TETHER_HELM_DESCRIPTION)]).status, 'drifted');
  });

  it('counts the fields helm owns through client-side Update operations', () => {
    const owned = { 'f:data': { 'f:greeting': {} } };
    const live = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', managedFields: [{ manager: 'helm', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: owned }] }, data: { greeting: 'hand' } };
    const desired = { ...live, data: { greeting: 'hello' } };
    assert.equal(diffObject(desired, live, HELM_FIELD_MANAGER, HELM_OWNED_OPERATIONS).status, 'drifted');
    const other = {
      ...live,
      metadata: { ...live.metadata, managedFields: [...live.metadata.managedFields, { manager: 'kubectl-edit', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:data': { 'f:extra': {} } } }] },
      data: { greeting: 'hello', extra: 'theirs' },
    };
    assert.equal(diffObject(desired, other, HELM_FIELD_MANAGER, HELM_OWNED_OPERATIONS).status, 'in-sync', 'a field another manager set is not drift');
  });

  it('the diff spec takes a helm target without action', () => {
    const spec = { release: 'web', namespace: 'apps', chart: { oci: 'oci://r.example/c' } };
    assert.ok(diffSpecSchema.safeParse({ target: 'helm', spec }).success);
    assert.ok(!diffSpecSchema.safeParse({ target: 'helm', spec: { ...spec, action: 'apply' } }).success);
    assert.ok(!diffSpecSchema.safeParse({ target: 'helm', spec: { ...spec, release: '-x' } }).success);
  });
});
