/**
 * The agent runtime delivers a result and claims its next command in one request (result?next=N,
 * issue 18) against a real control plane over mTLS: one request per command when the control plane
 * answers `next`; the result and a poll, as before, when it answers without (a control plane from
 * before `next` ignores the query: its answer is report()'s); and a combined request that fails
 * leaves the result in the outbox, delivered by the usual path.
 */
import assert from 'node:assert/strict';
import { AgentRuntime, type Executor } from '../../common/agent/runtime.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import type { AgentClient } from '../../common/agent/agent-client.ts';
import { HttpError } from '../../common/http-client.ts';
import { silentLogger } from '../../common/logger.ts';
import type { CommandView, ResultResponse } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

/** Counts the client's agent-API calls of each kind (each is one HTTP request). */
function counted(client: AgentClient) {
  const n = { poll: 0, report: 0, reportAndPoll: 0, reportIds: [] as number[] };
  const poll = client.poll.bind(client);
  const report = client.report.bind(client);
  const reportAndPoll = client.reportAndPoll.bind(client);
  client.poll = (...a) => (n.poll++, poll(...a));
  client.report = (...a) => (n.report++, n.reportIds.push(a[0]), report(...a));
  client.reportAndPoll = (...a) => (n.reportAndPoll++, reportAndPoll(...a));
  return { n, restore: () => Object.assign(client, { poll, report, reportAndPoll }) };
}

describe('agent runtime: result and next command in one request', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let agent: TestAgent;
  const runtimes: AgentRuntime[] = [];
  const dirs: string[] = [];
  const succeed: Executor = async () => ({ status: 'succeeded' });

  const runtime = (extra: Partial<ConstructorParameters<typeof AgentRuntime>[0]> = {}) => {
    const r = new AgentRuntime({
      client: agent.client,
      execute: succeed,
      log: silentLogger(),
      version: 'test',
      collectMetrics: () => ({ cpuPercent: 1 }),
      heartbeatIntervalMs: 60_000,
      pollWaitSeconds: 2,
      minBackoffMs: 50,
      maxBackoffMs: 200,
      ...extra,
    });
    runtimes.push(r);
    r.start();
    return r;
  };
  const submit = async () => (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'rr1' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body.id;
  const job = async (id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const allSucceeded = (ids: number[]) => eventually(async () => (await Promise.all(ids.map(job))).every((j) => j.state === 'succeeded'), 20_000, `jobs ${ids.join(', ')} to succeed`);

  beforeEach(async () => {
    t = await startTestControlPlane();
    await t.createCluster('rr1');
    agent = await t.agent('rr1', 'cluster-agent');
  });
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((r) => r.stop(100)));
    agent.client.close();
    await t.close();
    removeDir(t.dataDir);
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('uses one request per command when the control plane answers next: the first poll, then a result with next per command', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(await submit());
    const { n } = counted(agent.client);
    runtime({ pollWaitSeconds: 15 });
    await allSucceeded(ids);
    // The fifth result's request may still be held (nothing queued); every one was made.
    await eventually(() => n.reportAndPoll === 5, 5000, 'five results with next');
    assert.equal(n.poll, 1, `one poll (the first), got ${n.poll}`);
    assert.equal(n.report, 0, 'no result sent alone');
    assert.equal((n.poll + n.report + n.reportAndPoll) / ids.length, 1.2, 'six requests for five commands');
  });

  it('falls back to the result and a poll when the control plane answers without next (one from before it)', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) ids.push(await submit());
    const { n } = counted(agent.client);
    // An older control plane ignores the unknown query parameter: its answer is the result's alone.
    agent.client.reportAndPoll = async (id, result) => (n.reportAndPoll++, (await agent.client.report(id, result)) as ResultResponse);
    runtime();
    await allSucceeded(ids);
    await eventually(() => n.poll >= 4, 5000, 'a poll after each result');
    assert.equal(n.reportAndPoll, 3, 'each result was offered with next');
    assert.deepEqual(n.reportIds, ids, 'each delivered once, by the answer that lacked next');
    assert.equal(await (async () => (await Promise.all(ids.map(job))).filter((j) => j.state === 'succeeded').length)(), 3);
  });

  it('keeps the result in the outbox when the combined request fails, and delivers it by the usual path', async () => {
    const dir = tempDir('tether-outbox-');
    dirs.push(dir);
    const outbox = new FileOutbox(dir);
    const id = await submit();
    const { n } = counted(agent.client);
    const inOutboxAtReport: number[][] = [];
    const reportAndPoll = agent.client.reportAndPoll;
    agent.client.reportAndPoll = async (...a) => {
      // The first one fails as a lost connection would (nothing reached the control plane).
      if (n.reportAndPoll === 0) {
        n.reportAndPoll++;
        throw new HttpError(503, 'unavailable', 'connection lost');
      }
      return reportAndPoll(...a);
    };
    const report = agent.client.report;
    agent.client.report = async (...a) => {
      inOutboxAtReport.push((await outbox.list()).map((e) => e.commandId));
      return report(...a);
    };
    runtime({ outbox });
    await allSucceeded([id]);
    assert.equal(n.reportAndPoll, 1, 'the combined request was tried once');
    assert.deepEqual(inOutboxAtReport, [[id]], 'the entry survived the failed request and was sent by the flush before the next poll');
    await eventually(async () => (await outbox.list()).length === 0, 5000, 'the outbox emptied once acknowledged');
  });
});
