/**
 * Pruning (issue 13), the pure parts: which bundle resources a new desired state removes and in
 * which order (reverse dependency order of the previous version), their delete steps compiled
 * from the previous version, the objects earlier apply flows applied per manifest step, the
 * `prune` lists added to the apply and diff flows; in the agent, which earlier objects a manifest
 * apply prunes (by group, kind, namespace, name; in deletion order) and whether Tether manages a
 * live object.
 */
import assert from 'node:assert/strict';
import { flowSpecSchema, type FlowStep } from '../../common/specs.ts';
import type { Bundle, BundleResource } from '../../control-plane/bundles/bundle.schema.ts';
import { compileBundle, compileDiff, NAMESPACE_STEP, type InstanceContext } from '../../control-plane/bundles/compile.ts';
import { appliedObjects, diffWithPruning, prunedResources, pruneSteps, withPruning } from '../../control-plane/bundles/prune.plan.ts';
import { managedBy, prunable } from '../../cluster-agent/manifest/prune.plan.ts';

const ctx = (commit: string): InstanceContext => ({ osid: 'app-ab12c', cluster: 'prod1', clusterDomain: 'prod1.acc01.tether.local', git: { url: 'file:///srv/stacks.git', commit: commit.repeat(40), path: 'app' } });
const bundle = (resources: BundleResource[]): Bundle => ({ name: 'app', version: '1.0.0', ports: [], inputs: { size: { type: 'string', default: 's' } }, resources, outputs: {} });

const db: BundleResource = { name: 'db', type: 'tofu', source: 'modules/db', vars: { size: { inputRef: 'size' } } };
const cache: BundleResource = { name: 'cache', type: 'helm', source: 'charts/cache', dependsOn: ['db'] };
const web: BundleResource = { name: 'web', type: 'helm', source: 'charts/web', values: { db: { outputRef: { step: 'db', key: 'host' } } } };
const policy: BundleResource = { name: 'policy', type: 'manifest', source: 'manifests', dependsOn: ['web'] };

describe('bundles: pruning (plan)', () => {
  it('names the resources the new version no longer has, dependents first (reverse dependency order)', () => {
    const before = bundle([policy, web, cache, db]);
    // Apply order db, web, policy, cache: removed in the reverse.
    assert.deepEqual(prunedResources(before, bundle([web, db])), [
      { name: 'cache', type: 'helm', action: 'helm uninstall' },
      { name: 'policy', type: 'manifest', action: 'manifest delete' },
    ]);
    assert.deepEqual(prunedResources(before, before), []);
    // policy before web, which it depends on.
    assert.deepEqual(prunedResources(before, bundle([db])).map((r) => r.name), ['cache', 'policy', 'web']);
  });

  it("compiles the pruned resources' delete steps from the previous version (its commit and inputs), in removal order", () => {
    const prev = { bundle: bundle([db, web, cache, policy]), inputs: { size: 'l' }, ctx: ctx('a') };
    const steps = pruneSteps(prev, bundle([db]));
    // Apply order db, web, cache, policy (declaration order breaks ties): removed in the reverse.
    assert.deepEqual(steps.map((s) => [s.name, s.type, (s.spec as { action?: string }).action]), [
      ['policy', 'manifest', 'delete'],
      ['cache', 'helm', 'delete'],
      ['web', 'helm', 'delete'],
    ]);
    assert.equal((steps[0]!.spec as { source: { git: { ref: string } } }).source.git.ref, 'a'.repeat(40), 'the previous commit');
    assert.deepEqual(pruneSteps(prev, prev.bundle), []);
    // A tofu resource is destroyed with the previous version's variables.
    const tofu = pruneSteps(prev, bundle([web]));
    assert.deepEqual((tofu.find((s) => s.name === 'db')!.spec as { vars: unknown }).vars, { size: 'l' });
  });

  it('looks back over several versions (a failed apply may have left them): each resource once, from the newest version that has it', () => {
    const v3 = { bundle: bundle([db, web]), inputs: { size: 'l' }, ctx: ctx('c') };
    const v2 = { bundle: bundle([db, { ...web, values: {} }, cache]), inputs: { size: 'm' }, ctx: ctx('b') };
    const v1 = { bundle: bundle([db, { ...web, values: {} }, policy]), inputs: { size: 's' }, ctx: ctx('a') };
    assert.deepEqual(prunedResources([v3.bundle, v2.bundle, v1.bundle], bundle([db])).map((r) => r.name), ['web', 'cache', 'policy']);
    const steps = pruneSteps([v3, v2, v1], bundle([db]));
    assert.deepEqual(steps.map((s) => [s.name, (s.spec as { action?: string }).action]), [['web', 'delete'], ['cache', 'delete'], ['policy', 'delete']]);
    const refs = steps.map((s) => ((s.spec as { chart?: { git: { ref: string } }; source?: { git: { ref: string } } }).chart ?? (s.spec as { source: { git: { ref: string } } }).source).git.ref[0]);
    assert.deepEqual(refs, ['c', 'b', 'a'], 'each from the newest version that has it');
    assert.deepEqual(pruneSteps([v3, v2, v1], bundle([db, web, cache, policy])), []);
  });

  it('collects what earlier apply flows applied per step, once each, skipping malformed entries', () => {
    const cm = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'app-ab12c', name });
    const applied = appliedObjects([
      { steps: [{ name: 'policy', outputs: { applied: [cm('a'), cm('b'), { kind: 'X' }, null] } }, { name: 'web', outputs: { release: 'web' } }] },
      { steps: [{ name: 'policy', outputs: { applied: [cm('b'), cm('c')] } }, { name: 7 }] },
      null,
      { steps: 'nope' },
    ]);
    assert.deepEqual([...applied.keys()], ['policy']);
    assert.deepEqual(applied.get('policy'), [cm('a'), cm('b'), cm('c')]);
  });

  it("adds each manifest step's earlier objects as prune (never the Namespace's), then the delete steps, and the flow stays valid", () => {
    const next = bundle([{ ...web, values: {} }, policy]);
    const flow = compileBundle(next, { size: 's' }, ctx('b'), 'apply');
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'app-ab12c', name: 'old' };
    const ns = { apiVersion: 'v1', kind: 'Namespace', name: 'app-ab12c' };
    const removal: FlowStep = { name: 'cache', type: 'helm', spec: { action: 'delete', release: 'cache', namespace: 'app-ab12c', chart: { git: { url: 'file:///srv/stacks.git', ref: 'a'.repeat(40), path: 'app/charts/cache' } } } };
    const out = withPruning(flow, new Map([['policy', [cm]], [NAMESPACE_STEP, [ns]], ['web', [cm]]]), [removal]);
    const parsed = flowSpecSchema.safeParse(out);
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
    assert.deepEqual(out.steps.map((s) => s.name), [NAMESPACE_STEP, 'web', 'policy', 'cache']);
    assert.deepEqual((out.steps[2]!.spec as { prune?: unknown }).prune, [cm]);
    assert.equal((out.steps[0]!.spec as { prune?: unknown }).prune, undefined, 'the Namespace is never pruned');
    assert.equal((out.steps[1]!.spec as { prune?: unknown }).prune, undefined, 'a helm step takes no prune');
    const diff = diffWithPruning(compileDiff(next, { size: 's' }, ctx('b'), null), new Map([['policy', [cm]], [NAMESPACE_STEP, [ns]]]));
    assert.ok(flowSpecSchema.safeParse(diff).success);
    assert.deepEqual(diff.steps.map((s) => (s.spec as { spec: { prune?: unknown } }).spec.prune), [undefined, undefined, [cm]]);
  });

  it('the agent prunes earlier objects no longer listed (same group is the same object), once each, CRDs and Namespaces last', () => {
    const r = (apiVersion: string, kind: string, name: string, namespace?: string) => ({ apiVersion, kind, name, ...(namespace ? { namespace } : {}) });
    const previous = [
      r('v1', 'Namespace', 'extra'),
      r('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'widgets.example.com'),
      r('apps/v1', 'Deployment', 'web', 'ns'),
      r('v1', 'ConfigMap', 'gone', 'ns'),
      r('v1', 'ConfigMap', 'gone', 'ns'),
      r('autoscaling/v2', 'HorizontalPodAutoscaler', 'web', 'ns'),
      r('v1', 'ConfigMap', 'kept', 'ns'),
    ];
    const current = [r('apps/v1', 'Deployment', 'web', 'ns'), r('autoscaling/v1', 'HorizontalPodAutoscaler', 'web', 'ns'), r('v1', 'ConfigMap', 'kept', 'ns'), r('v1', 'ConfigMap', 'gone', 'other')];
    assert.deepEqual(prunable(previous, current), [
      r('v1', 'ConfigMap', 'gone', 'ns'),
      r('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'widgets.example.com'),
      r('v1', 'Namespace', 'extra'),
    ]);
    assert.deepEqual(prunable(current, current), []);
  });

  it("deletes only what Tether's field manager manages", () => {
    assert.equal(managedBy({ metadata: { managedFields: [{ manager: 'kubectl-edit' }, { manager: 'tether', operation: 'Apply' }] } }, 'tether'), true);
    assert.equal(managedBy({ metadata: { managedFields: [{ manager: 'kubectl-client-side-apply' }] } }, 'tether'), false);
    assert.equal(managedBy({ metadata: {} }, 'tether'), false);
    assert.equal(managedBy(null, 'tether'), false);
  });
});
