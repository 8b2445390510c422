/**
 * Older cluster agents and `prune` in manifest specs: an agent built before 0.2.0 refuses a spec
 * with `prune` (strict schema), so for a cluster whose agent reports an older version the control
 * plane leaves `prune` out of the manifest steps of apply and diff flows and says so in the job's
 * log; once the agent reports 0.2.0 the steps carry it again. Real control plane (TLS, migrated
 * database), a real git source, a scripted agent over the real agent API reporting the version.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { AgentView, CommandView } from '../../common/wire.ts';
import type { DeployResponse, DiffResponse } from '../../control-plane/bundles/bundles.wire.ts';
import { MANIFEST_PRUNE_SINCE, oldAgentVersion, takesManifestPrune } from '../../control-plane/bundles/agent-compat.plan.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { bareRepo } from '../cluster-agent/support.ts';

const CID = 'compat';
const BUNDLE = 'name: stack\nversion: 1.0.0\ntype: stk\ninputs:\n  message: {type: string, default: hello}\nresources:\n  - name: config\n    type: manifest\n    source: manifests\n';

interface Step {
  name: string;
  type: string;
  spec: { prune?: unknown; target?: string; spec?: { prune?: unknown } };
}

describe('bundles: prune only for cluster agents that take it', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let agent: TestAgent;
  let osid: string;

  const logs = async (id: number) => (await t.admin.request<{ lines: { stream: string; text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body.lines;
  const reports = async (version: string) => {
    await agent.client.heartbeat({ version, running: [] });
    await eventually(async () => (await t.admin.request<AgentView>('GET', `/v1/agents/${agent.identity.agentId}`)).body.version === version, 10_000, `version ${version} recorded`);
  };
  /** Claims the queued job and reports it succeeded, the config step having applied one ConfigMap. */
  async function run(): Promise<{ id: number; steps: Step[] }> {
    const { command } = await agent.client.poll(5);
    assert.ok(command);
    const steps = (command.spec as { steps: Step[] }).steps;
    const applied = [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: osid, name: 'settings' }];
    const summary = { inSync: 1, drifted: 0, missing: 0, error: 0 };
    await agent.client.report(command.id, { leaseId: command.leaseId, outcome: 'succeeded', outputs: { steps: steps.map((s) => ({ name: s.name, state: 'succeeded', outputs: s.type === 'diff' ? { summary } : { applied } })) } });
    return { id: command.id, steps };
  }
  const redeploy = async () => (await t.admin.request<DeployResponse>('POST', `/v1/instances/${osid}/deploy`, { inputs: {} })).body.jobId;

  before(async () => {
    dir = tempDir('tether-agent-compat-');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowFileRoots: [dir] }, { reaper: false, driftScheduler: false });
    await t.createCluster(CID);
    const repo = bareRepo(dir, 'stacks');
    repo.commit({ 'stack/bundle.yaml': BUNDLE, 'stack/manifests/settings.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n' });
    await t.admin.request('POST', '/v1/bundles', { name: 'stack', url: repo.url, ref: 'main', path: 'stack' });
    agent = await t.agent(CID, 'cluster-agent');
    osid = (await t.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'stack', cluster: CID, inputs: {} })).body.osid;
    await run();
  });
  after(async () => {
    agent?.client.close();
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('an agent reporting 0.1.0 gets manifest steps without prune (apply and diff), and the job log says the objects are not pruned', async () => {
    await reports('0.1.0');
    const jobId = await redeploy();
    const applied = await run();
    assert.equal(applied.id, jobId);
    const config = applied.steps.find((s) => s.name === 'config')!;
    assert.equal(config.spec.prune, undefined, 'no prune for the old agent');
    const lines = await logs(jobId);
    assert.equal(lines[0]?.stream, 'system');
    assert.match(lines[0]!.text, new RegExp(`cluster agent reports version 0\\.1\\.0, older than ${MANIFEST_PRUNE_SINCE.replace(/\./g, '\\.')}: .* not pruned \\(steps config\\); upgrade the cluster agent`));

    const d = (await t.admin.request<DiffResponse>('POST', `/v1/instances/${osid}/diff`)).body;
    const checked = await run();
    assert.equal(checked.id, d.jobId);
    assert.equal(checked.steps.find((s) => s.name === 'config')!.spec.spec?.prune, undefined, 'no prune in the diff step either');
    assert.match((await logs(d.jobId))[0]!.text, /not reported \(steps config\)/);
  });

  it(`an agent reporting ${MANIFEST_PRUNE_SINCE} gets prune again, with nothing in the log`, async () => {
    await reports(MANIFEST_PRUNE_SINCE);
    const jobId = await redeploy();
    const applied = await run();
    assert.deepEqual(applied.steps.find((s) => s.name === 'config')!.spec.prune, [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: osid, name: 'settings' }]);
    assert.deepEqual((await logs(jobId)).filter((l) => l.stream === 'system'), []);
    const jobs = (await t.admin.request<{ commands: CommandView[] }>('GET', `/v1/commands?cluster=${CID}`)).body.commands;
    assert.ok(jobs.every((j) => j.state !== 'failed'));
  });

  it('versions: older than 0.2.0 is old; unknown or unreported is not; the agents that heartbeated last decide', () => {
    assert.equal(takesManifestPrune('0.1.0'), false);
    assert.equal(takesManifestPrune('0.1.9'), false);
    assert.equal(takesManifestPrune('0.2.0'), true);
    assert.equal(takesManifestPrune('v1.0.0-rc1'), true);
    assert.equal(takesManifestPrune(null), true);
    assert.equal(takesManifestPrune('dev'), true);
    const now = 10 * 3600_000;
    assert.equal(oldAgentVersion([{ version: '0.1.0', last_heartbeat_at: now - 3600_000 }, { version: '0.2.0', last_heartbeat_at: now - 1000 }], now), undefined, 'a reinstalled agent replaces a silent old one');
    assert.equal(oldAgentVersion([{ version: '0.1.0', last_heartbeat_at: now - 2000 }, { version: '0.2.0', last_heartbeat_at: now - 1000 }], now), '0.1.0', 'two live agents: either may claim');
    assert.equal(oldAgentVersion([{ version: '0.1.0', last_heartbeat_at: now - 7200_000 }], now), '0.1.0', 'the last one seen');
    assert.equal(oldAgentVersion([{ version: null, last_heartbeat_at: null }], now), undefined);
  });
});
