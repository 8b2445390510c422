/** The helm argument list as a pure function of the spec, and the release JSON it reads back. */
import assert from 'node:assert/strict';
import { helmSpecSchema } from '../../common/specs.ts';
import {
  helmRecovery,
  isHelmOperationInProgress,
  parseHelmHistory,
  parseHelmRelease,
  parseHelmStatus,
  planHelmHistory,
  planHelmRollback,
  planHelmStatus,
  planHelmUpgrade,
} from '../../cluster-agent/helm/helm.plan.ts';

const spec = (s: unknown) => helmSpecSchema.parse(s);

describe('helm plan', () => {
  it('installs a repo chart with every user value as --flag=value or after --', () => {
    const args = planHelmUpgrade({
      spec: spec({ release: 'web', namespace: 'apps', chart: { repo: 'https://charts.example.com', name: 'nginx', version: '1.2.3' }, createNamespace: true, wait: true, timeoutSeconds: 120 }),
      kubeconfig: '/k/config',
      valuesFile: '/run/values.json',
    });
    assert.deepEqual(args, [
      'upgrade', '--install', '--namespace=apps', '--kubeconfig=/k/config', '--create-namespace', '--wait', '--timeout=120s',
      '--history-max=10', '--description=Applied by tether', '--output=json', '--repo=https://charts.example.com', '--version=1.2.3', '--values=/run/values.json', '--', 'web', 'nginx',
    ]);
  });

  it('uses an OCI reference as the chart', () => {
    const args = planHelmUpgrade({ spec: spec({ release: 'db', namespace: 'data', chart: { oci: 'oci://registry.example.com/charts/pg' } }), kubeconfig: '/k' });
    assert.deepEqual(args.slice(-3), ['--', 'db', 'oci://registry.example.com/charts/pg']);
    assert.ok(!args.includes('--wait') && !args.includes('--create-namespace'));
    assert.ok(!args.some((a) => a.startsWith('--values')));
  });

  it('uses the checked-out folder for a git chart, and refuses to plan without it', () => {
    const s = spec({ release: 'app', namespace: 'x', chart: { git: { url: 'file:///repo.git', ref: 'main', path: 'charts/app' } } });
    assert.deepEqual(planHelmUpgrade({ spec: s, kubeconfig: '/k', chartPath: '/srv/charts/app' }).slice(-3), ['--', 'app', '/srv/charts/app']);
    assert.throws(() => planHelmUpgrade({ spec: s, kubeconfig: '/k' }));
  });

  it('nothing the user gives can start with a dash as its own argument', () => {
    const args = planHelmUpgrade({ spec: spec({ release: 'a', namespace: 'b', chart: { repo: 'https://x.example', name: 'c' } }), kubeconfig: '/k' });
    const dashDash = args.indexOf('--');
    for (const a of args.slice(0, dashDash)) assert.ok(a.startsWith('--') && (a.includes('=') || ['--install', '--create-namespace', '--wait'].includes(a)) || a === 'upgrade', a);
  });

  it('the specs refuse release names and versions that could be options', () => {
    assert.equal(helmSpecSchema.safeParse({ release: '--set', namespace: 'a', chart: { oci: 'oci://x/y' } }).success, false);
    assert.equal(helmSpecSchema.safeParse({ release: 'a', namespace: 'a', chart: { oci: 'oci://x/y', version: '--devel' } }).success, false);
  });

  it('reads release, namespace, revision and status, and never the values', () => {
    const json = JSON.stringify({ name: 'web', namespace: 'apps', version: 2, info: { status: 'deployed' }, config: { password: 'hunter2' }, chart: { metadata: { name: 'c', version: '0.1.0', appVersion: '1.0' } } });
    const out = parseHelmRelease(`WARNING: something\n${json}`);
    assert.deepEqual(out, { release: 'web', namespace: 'apps', revision: 2, status: 'deployed', chart: 'c', chartVersion: '0.1.0', appVersion: '1.0' });
    assert.ok(!JSON.stringify(out).includes('hunter2'));
    assert.throws(() => parseHelmRelease('not json'));
  });

  describe('a release left pending by a killed run', () => {
    const began = Date.parse('2026-11-23T11:06:48Z');
    const history = [
      { revision: 1, status: 'superseded' },
      { revision: 2, status: 'deployed' },
      { revision: 3, status: 'pending-upgrade' },
    ];

    it('recognises helm\'s busy-release error', () => {
      assert.ok(isHelmOperationInProgress('Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress'));
      assert.ok(!isHelmOperationInProgress('Error: UPGRADE FAILED: timed out waiting for the condition'));
    });

    it('reads status and history JSON, never more than it needs', () => {
      const st = parseHelmStatus(JSON.stringify({ name: 'web', version: 3, info: { status: 'pending-upgrade', last_deployed: '2026-11-23T11:06:48.000000+00:00' }, config: { password: 'x' } }));
      assert.deepEqual(st, { status: 'pending-upgrade', revision: 3, lastDeployedAt: began });
      assert.deepEqual(parseHelmStatus('{"version":1,"info":{"status":"pending-install"}}'), { status: 'pending-install', revision: 1 });
      assert.deepEqual(parseHelmHistory(JSON.stringify([{ revision: 1, status: 'deployed', updated: 'x', chart: 'c' }, { nope: 1 }])), [{ revision: 1, status: 'deployed' }]);
      assert.throws(() => parseHelmStatus('not json'));
      assert.throws(() => parseHelmHistory('{}'));
    });

    it('rolls a stale pending-upgrade back to the last good revision', () => {
      const d = helmRecovery({ status: 'pending-upgrade', revision: 3, lastDeployedAt: began }, history, began + 1);
      assert.equal(d.action, 'rollback');
      assert.equal(d.action === 'rollback' && d.revision, 2);
      assert.match(d.reason, /before this agent process started/);
    });

    it('uninstalls a stale pending-install that never had a good revision', () => {
      assert.equal(helmRecovery({ status: 'pending-install', revision: 1, lastDeployedAt: began }, [{ revision: 1, status: 'pending-install' }], began + 1).action, 'uninstall');
    });

    it('leaves alone what may be live: begun since this process started, of unknown age, or not pending', () => {
      assert.equal(helmRecovery({ status: 'pending-upgrade', revision: 3, lastDeployedAt: began }, history, began).action, 'none');
      assert.equal(helmRecovery({ status: 'pending-upgrade', revision: 3, lastDeployedAt: began }, history, began - 1).action, 'none');
      assert.equal(helmRecovery({ status: 'pending-upgrade', revision: 3 }, history, began + 1).action, 'none');
      assert.equal(helmRecovery({ status: 'deployed', revision: 2, lastDeployedAt: began }, history, began + 1).action, 'none');
    });

    it('reads and recovers with every user value after --', () => {
      const input = { spec: spec({ release: 'web', namespace: 'apps', chart: { repo: 'https://charts.example.com', name: 'nginx' } }), kubeconfig: '/k/config' };
      assert.deepEqual(planHelmStatus(input), ['status', '--namespace=apps', '--kubeconfig=/k/config', '--output=json', '--', 'web']);
      assert.deepEqual(planHelmHistory(input), ['history', '--namespace=apps', '--kubeconfig=/k/config', '--output=json', '--max=11', '--', 'web']);
      assert.deepEqual(planHelmRollback(input, 2), ['rollback', '--namespace=apps', '--kubeconfig=/k/config', '--history-max=10', '--', 'web', '2']);
    });
  });
});
