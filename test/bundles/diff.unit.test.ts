/**
 * Drift (issue 13), the pure parts: an instance compiled to a flow of diff steps (the apply flow's
 * specs without action, outputRefs from the last apply), the sync status of an ended diff flow,
 * and what `tether diff` prints and exits with.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { flowSpecSchema, findRefs } from '../../common/specs.ts';
import { validateBundleDir } from '../../control-plane/bundles/bundle-fs.ts';
import type { Bundle } from '../../control-plane/bundles/bundle.schema.ts';
import { compileBundle, compileDiff, resolveInputs, syncStatusOf, NAMESPACE_STEP, type InstanceContext } from '../../control-plane/bundles/compile.ts';
import { renderDiff } from '../../control-plane/cli/diff.commands.ts';
import { REPO_ROOT } from '../support/control-plane.ts';

const load = (name: string) => validateBundleDir(join(REPO_ROOT, 'bundles', name)).bundle!;
const ctx: InstanceContext = { osid: 'db-ab12c', cluster: 'prod1', clusterDomain: 'prod1.acc01.tether.local', git: { url: 'file:///srv/stacks.git', commit: 'c'.repeat(40), path: 'database' } };

describe('bundles: drift (diff flow, sync status, tether diff output)', () => {
  it('compiles one diff step per apply step, with the apply specs without action', () => {
    const webapp = load('webapp');
    const c = { ...ctx, osid: 'web-ab12c', git: { ...ctx.git, path: 'webapp' } };
    const inputs = resolveInputs(webapp, { replicas: 2 }).values;
    const apply = compileBundle(webapp, inputs, c, 'apply');
    const diff = compileDiff(webapp, inputs, c, null);
    assert.ok(flowSpecSchema.safeParse(diff).success, JSON.stringify(flowSpecSchema.safeParse(diff).error?.issues));
    assert.deepEqual(diff.steps.map((s) => [s.name, s.type, (s.spec as { target: string }).target]), [
      [NAMESPACE_STEP, 'diff', 'manifest'],
      ['policy', 'diff', 'manifest'],
      ['app', 'diff', 'helm'],
    ]);
    diff.steps.forEach((s, i) => assert.deepEqual((s.spec as { spec: unknown }).spec, apply.steps[i]!.spec, `step ${s.name}: the apply spec (no action)`));
  });

  it('resolves outputRefs from the last apply: tofu outputs from their Secret, helm outputs from the apply flow, null when unknown', () => {
    const database = load('database');
    const b: Bundle = {
      ...database,
      resources: [
        ...database.resources,
        { name: 'extra', type: 'tofu', source: 'modules/credentials', vars: { username: { outputRef: { step: 'credentials', key: 'username' } }, rev: { outputRef: { step: 'server', key: 'revision' } }, chart: { outputRef: { step: 'server', key: 'chart' } } } },
      ],
    };
    const inputs = resolveInputs(b, {}).values;
    const applied = { steps: [{ name: 'server', type: 'helm', state: 'succeeded', outputs: { release: 'server', revision: 3 } }] };
    const diff = compileDiff(b, inputs, ctx, applied);
    assert.ok(flowSpecSchema.safeParse(diff).success, JSON.stringify(flowSpecSchema.safeParse(diff).error?.issues));
    for (const s of diff.steps) assert.deepEqual(findRefs(s.spec).outputs, [], `step ${s.name} has no outputRef left`);
    const server = diff.steps.find((s) => s.name === 'server')!.spec as { spec: { values: Record<string, unknown> } };
    const sec = (key: string) => ({ secretRef: { name: 'credentials-outputs', key, namespace: 'db-ab12c' } });
    assert.deepEqual(server.spec.values.auth, { username: sec('username'), database: sec('database'), password: sec('password') }, 'tofu outputs are read from their Secret in the agent (a sensitive one never passes the control plane)');
    const extra = diff.steps.find((s) => s.name === 'extra')!.spec as { spec: { vars: Record<string, unknown> } };
    assert.deepEqual(extra.spec.vars, { username: { secretRef: { name: 'credentials-outputs', key: 'username', namespace: 'db-ab12c' } }, rev: 3, chart: null });
  });

  it('an ended diff flow: synced, drifted (drifted or missing), error (a failed job or step, an object not compared)', () => {
    const step = (name: string, summary: Record<string, number>, state = 'succeeded') => ({ name, state, outputs: { summary: { inSync: 0, drifted: 0, missing: 0, error: 0, ...summary } } });
    assert.equal(syncStatusOf({ state: 'succeeded', outputs: { steps: [step('a', { inSync: 2 }), step('b', { inSync: 1 })] } }), 'synced');
    assert.equal(syncStatusOf({ state: 'succeeded', outputs: { steps: [step('a', { inSync: 2 }), step('b', { drifted: 1 })] } }), 'drifted');
    assert.equal(syncStatusOf({ state: 'succeeded', outputs: { steps: [step('a', { missing: 1 })] } }), 'drifted');
    assert.equal(syncStatusOf({ state: 'succeeded', outputs: { steps: [step('a', { drifted: 1 }), step('b', { error: 1 })] } }), 'error');
    assert.equal(syncStatusOf({ state: 'failed', outputs: { steps: [step('a', { drifted: 1 })] } }), 'error');
    assert.equal(syncStatusOf({ state: 'cancelled', outputs: null }), 'error');
    assert.equal(syncStatusOf({ state: 'succeeded', outputs: {} }), 'error');
  });

  it('tether diff prints what is not in sync like kubectl diff and exits 0 / 2 / 1', () => {
    const resources = [
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'web-ab12c', name: 'ok', status: 'in-sync' },
      { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web-ab12c', name: 'app', status: 'drifted', diff: '--- live\n+++ desired\n@@ -1 +1 @@\n-  replicas: 5\n+  replicas: 2\n' },
      { apiVersion: 'v1', kind: 'Secret', namespace: 'web-ab12c', name: 'creds', status: 'missing' },
    ];
    const clean = renderDiff({ state: 'succeeded', error: null, outputs: { steps: [{ name: 'app', state: 'succeeded', outputs: { resources: [resources[0]] } }] } });
    assert.deepEqual(clean, { text: 'in sync\n', exitCode: 0 });
    const drift = renderDiff({ state: 'succeeded', error: null, outputs: { steps: [{ name: 'app', state: 'succeeded', outputs: { resources } }, { name: 'db', state: 'succeeded', outputs: { resources: [{ address: 'kubernetes_config_map.app', status: 'drifted', diff: 'update' }] } }] } });
    assert.equal(drift.exitCode, 2);
    assert.equal(
      drift.text,
      '=== app: apps/v1 Deployment web-ab12c/app: drifted\n--- live\n+++ desired\n@@ -1 +1 @@\n-  replicas: 5\n+  replicas: 2\n' +
        '=== app: v1 Secret web-ab12c/creds: missing\n=== db: kubernetes_config_map.app: drifted\nupdate\n',
    );
    const failed = renderDiff({ state: 'failed', error: { code: 'helm_failed', message: 'no chart', retryable: false }, outputs: { steps: [{ name: 'app', state: 'succeeded', outputs: { resources } }, { name: 'db', state: 'failed', error: { code: 'helm_failed', message: 'no chart' } }] } });
    assert.equal(failed.exitCode, 1, 'a failed step is a failed diff, even with drift elsewhere');
    assert.match(failed.text, /^=== db: failed: helm_failed: no chart$/m);
    const noSteps = renderDiff({ state: 'failed', error: { code: 'timeout', message: 'took too long', retryable: false }, outputs: null });
    assert.deepEqual(noSteps, { text: 'the diff job failed: timeout: took too long\n', exitCode: 1 });
    const objectError = renderDiff({ state: 'succeeded', error: null, outputs: { steps: [{ name: 'app', state: 'succeeded', outputs: { resources: [{ ...resources[0], status: 'error', error: 'forbidden' }] } }] } });
    assert.equal(objectError.exitCode, 1);
  });
});
