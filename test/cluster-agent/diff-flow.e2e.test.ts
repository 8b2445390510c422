/**
 * Diff steps in a flow, end to end: a real control plane, a real kube-apiserver (envtest), the
 * cluster agent as a real process. A flow of diff steps reports every step's result: a drifted or
 * missing step is not a failure, and a failed diff step does not stop the steps after it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { kubeRequest, startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { createNamespace, runJob, spawnAgent, submit, waitForJob, type AgentProcess } from './support.ts';

const CID = 'alpha';
const NS = 'tether-system';
const TENANT = 'driftflow';
const APPLIED = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  color: blue';
const EDITED = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edited\ndata:\n  size: large';
const NEVER = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never-applied\ndata:\n  a: b';

interface StepReport {
  name: string;
  type: string;
  state: string;
  outputs?: { summary?: { inSync: number; drifted: number; missing: number; error: number }; resources?: { name: string; status: string; diff?: string }[] };
  error?: { code: string; message: string };
}

const diffStep = (name: string, manifests: string) => ({ name, type: 'diff', spec: { target: 'manifest', spec: { manifests, namespace: TENANT } } });

describe('flow of diff steps (end to end)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let agent: AgentProcess | undefined;

  before(async function () {
    dir = tempDir('tether-ca-diff-flow-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp') })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    await createNamespace(env, TENANT);
    agent = spawnAgent({ t, env, namespace: NS, workDir: join(dir, 'work'), token: await t.bootstrapToken(CID, 'cluster-agent') });
    await agent.waitForLog(/cluster agent running/);
    await runJob(t, CID, 'flow', {
      steps: [
        { name: 'applied', type: 'manifest', spec: { action: 'apply', manifests: APPLIED, namespace: TENANT } },
        { name: 'edited', type: 'manifest', spec: { action: 'apply', manifests: EDITED, namespace: TENANT } },
      ],
    });
    const r = await kubeRequest(env, 'PATCH', `/api/v1/namespaces/${TENANT}/configmaps/edited?fieldManager=kubectl-edit`, { data: { size: 'small' } }, { contentType: 'application/merge-patch+json' });
    assert.equal(r.status, 200, r.text);
  });

  after(async function () {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('reports in-sync, drifted and missing steps and succeeds (drift is not a failure, the flow never stops at it)', async () => {
    const v = await runJob(t, CID, 'flow', { steps: [diffStep('edited', EDITED), diffStep('never', NEVER), diffStep('applied', APPLIED)] });
    const steps = (v.outputs as { steps: StepReport[] }).steps;
    assert.deepEqual(steps.map((s) => [s.name, s.type, s.state]), [
      ['edited', 'diff', 'succeeded'],
      ['never', 'diff', 'succeeded'],
      ['applied', 'diff', 'succeeded'],
    ]);
    assert.deepEqual(steps[0]!.outputs!.summary, { inSync: 0, drifted: 1, missing: 0, error: 0 });
    assert.match(steps[0]!.outputs!.resources![0]!.diff!, /^-  size: small$/m);
    assert.deepEqual(steps[1]!.outputs!.summary, { inSync: 0, drifted: 0, missing: 1, error: 0 });
    assert.deepEqual(steps[2]!.outputs!.summary, { inSync: 1, drifted: 0, missing: 0, error: 0 });
  });

  it('runs the steps after a failed diff step, reports each, and fails the flow naming the failed step', async () => {
    const id = await submit(t, CID, 'flow', { steps: [diffStep('broken', 'kind: [unclosed'), diffStep('applied', APPLIED)] });
    const v = await waitForJob(t, id, 90_000);
    assert.equal(v.state, 'failed');
    assert.match(JSON.stringify(v.error), /broken/);
    const steps = (v.outputs as { steps: StepReport[] } | undefined)?.steps ?? [];
    assert.deepEqual(steps.map((s) => [s.name, s.state]), [
      ['broken', 'failed'],
      ['applied', 'succeeded'],
    ]);
    assert.deepEqual(steps[1]!.outputs!.summary, { inSync: 1, drifted: 0, missing: 0, error: 0 });
  });
});
