/**
 * The command queue over real mTLS: long-poll wake-up, tenant isolation, leases and fencing,
 * idempotency, cancellation, heartbeat status. Time-dependent rules use a manual clock.
 */
import assert from 'node:assert/strict';
import { ManualClock } from '../../common/clock.ts';
import { HttpError } from '../../common/http-client.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { startTestControlPlane, removeDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';
import { sqliteOf } from '../../control-plane/db/database.ts';
import type { CommandEnded } from '../../control-plane/queue/queue.service.ts';

const manifest = (name: string) => ({ manifests: `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}}\n` });

async function expectStatus(p: Promise<unknown>, status: number, code?: string) {
  const err = await p.then(
    () => assert.fail(`expected ${status}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HttpError, String(err));
  assert.equal(err.status, status, `${err.code}: ${err.message}`);
  if (code) assert.equal(err.code, code);
}

describe('command queue', () => {
  let t: TestControlPlane;
  const clock = new ManualClock();
  let alpha: TestAgent; // cluster agent of alpha
  let beta: TestAgent; // cluster agent of beta
  let nodeA: TestAgent; // node n1 of alpha

  const submit = async (body: Record<string, unknown>) =>
    (await t.admin.request<{ id: number; created: boolean; command: CommandView }>('POST', '/v1/commands', body)).body;
  const job = async (id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const drain = async (a: TestAgent) => {
    for (;;) {
      const r = await a.client.poll(0);
      if (!r.command) return;
      await a.client.report(r.command.id, { leaseId: r.command.leaseId, outcome: 'succeeded' });
    }
  };

  before(async () => {
    t = await startTestControlPlane({ leaseSeconds: 30, longPollSeconds: 20 }, { clock, reaper: false });
    await t.createCluster('alpha');
    await t.createCluster('beta');
    alpha = await t.agent('alpha', 'cluster-agent');
    beta = await t.agent('beta', 'cluster-agent');
    nodeA = await t.agent('alpha', 'node', { nodeName: 'n1' });
  });
  after(async () => {
    for (const a of [alpha, beta, nodeA]) a?.client.close();
    await t.close();
    removeDir(t.dataDir);
  });
  afterEach(async () => {
    await drain(alpha);
    await drain(beta);
    await drain(nodeA);
  });

  it('answers a held long-poll the moment a command is submitted', async function () {
    this.timeout(15_000); // the poll is held up to 20 s: only a wake-up can beat this test's timeout
    const polling = alpha.client.poll(20);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(t.cp.dispatcher.held, 1, 'the poll is held open');
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('wake') });
    const res = await polling;
    assert.equal(res.command?.id, id);
    assert.equal(res.command?.type, 'manifest');
    assert.equal((await job(id)).state, 'running');
    await alpha.client.report(id, { leaseId: res.command!.leaseId, outcome: 'succeeded' });
  });

  it('returns 202 with a job id and validates the spec per type', async () => {
    const res = await t.admin.request<{ id: number; state: string }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('x') });
    assert.equal(res.status, 202);
    assert.equal(res.body.state, 'queued');
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'helm', spec: { release: '--kubeconfig=/x', namespace: 'a', chart: { oci: 'oci://x/y' } } }), 400, 'invalid_spec');
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'preflight', spec: {} }), 400);
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha', node: 'n1' }, type: 'manifest', spec: manifest('y') }), 400);
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'nope1' }, type: 'manifest', spec: manifest('y') }), 404, 'cluster_not_found');
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha', node: 'ghost' }, type: 'preflight', spec: {} }), 404, 'node_not_found');
  });

  it('a submit to a cluster that does not exist is 404 cluster_not_found, with or without an idempotency key of an existing command', async () => {
    const first = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('keyed'), idempotencyKey: 'submit-404' });
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'nope2' }, type: 'manifest', spec: manifest('keyed'), idempotencyKey: 'submit-404' }), 404, 'cluster_not_found');
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'nope2' }, type: 'manifest', spec: manifest('k'), idempotencyKey: 'submit-404-new' }), 404, 'cluster_not_found');
    await expectStatus(t.admin.request('POST', '/v1/commands', { target: { cluster: 'nope2', node: 'n1' }, type: 'preflight', spec: {} }), 404, 'cluster_not_found');
    const again = await t.admin.request<{ id: number; created: boolean }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('keyed'), idempotencyKey: 'submit-404' });
    assert.deepEqual([again.status, again.body.id, again.body.created], [200, first.id, false]);
  });

  it('a submit to a cluster runs one SQL statement, its INSERT (the foreign key checks the cluster), in the turn\'s write batch', async function () {
    sqliteOnly(this, 'counts the statements better-sqlite3 runs');
    const stmt = Object.getPrototypeOf(sqliteOf(t.cp.db).prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown>;
    const originals = (['run', 'get', 'all', 'iterate'] as const).map((m) => [m, stmt[m]!] as const);
    const ran: string[] = [];
    let counting = false;
    for (const [m, f] of originals) stmt[m] = function (this: { source: string }, ...args: unknown[]) {
      if (counting && !/total_changes/.test(this.source)) ran.push(this.source.replace(/\s+/g, ' ').slice(0, 60));
      return f.apply(this, args);
    };
    try {
      await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('warm') });
      counting = true;
      const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('counted') });
      counting = false;
      // Alone in its turn, its batch (control-plane/db/write-batch.ts) holds it only: the batch's
      // BEGIN and COMMIT are shared by every write of a turn when more arrive together.
      assert.deepEqual(ran, ['BEGIN', 'INSERT INTO commands (aid, cid, nid, type, spec, state, idem', 'COMMIT']);
      assert.equal((await job(id)).state, 'queued');
    } finally {
      for (const [m, f] of originals) stmt[m] = f;
    }
    await drain(alpha);
  });

  it('keeps tenants apart: an agent sees, claims and reports only its own work', async () => {
    const a = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('a') });
    const n = await submit({ target: { cluster: 'alpha', node: 'n1' }, type: 'preflight', spec: {} });
    assert.equal((await beta.client.poll(0)).command, null, "beta's agent gets nothing of alpha's");
    const byNode = await nodeA.client.poll(0);
    assert.equal(byNode.command?.id, n.id, 'the node agent claims only its node command');
    const byAlpha = await alpha.client.poll(0);
    assert.equal(byAlpha.command?.id, a.id, "alpha's cluster agent claims the cluster command");
    assert.equal((await alpha.client.poll(0)).command, null, 'the cluster agent never gets node commands');
    // Reporting on, or logging to, another tenant's command looks like a missing job.
    await expectStatus(beta.client.report(a.id, { leaseId: byAlpha.command!.leaseId, outcome: 'succeeded' }), 404, 'job_not_found');
    await expectStatus(beta.client.logs(a.id, byAlpha.command!.leaseId, [{ stream: 'stdout', text: 'x' }]), 404, 'job_not_found');
    await expectStatus(nodeA.client.report(a.id, { leaseId: byAlpha.command!.leaseId, outcome: 'succeeded' }), 404, 'job_not_found');
    assert.equal((await job(a.id)).state, 'running');
    await alpha.client.report(a.id, { leaseId: byAlpha.command!.leaseId, outcome: 'succeeded' });
    await nodeA.client.report(n.id, { leaseId: byNode.command!.leaseId, outcome: 'succeeded' });
  });

  it('returns the same job for the same idempotency key', async () => {
    const body = { target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('idem'), idempotencyKey: 'deploy-42' };
    const first = await submit(body);
    const second = await t.admin.request<{ id: number; created: boolean }>('POST', '/v1/commands', body);
    assert.equal(second.status, 200);
    assert.equal(second.body.id, first.id);
    assert.equal(second.body.created, false);
    const all = (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands;
    assert.equal(all.filter((c) => c.idempotencyKey === 'deploy-42').length, 1);
  });

  it('requeues on lease expiry, fences the old attempt, and fails after max attempts', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('lease'), maxAttempts: 2 });
    const first = (await alpha.client.poll(0)).command!;
    assert.equal(first.attempt, 1);
    clock.advance(31_000);
    assert.equal(await t.cp.queue.reapExpired(), 1);
    assert.equal((await job(id)).state, 'queued', 'requeued after the lease expired');
    const second = (await alpha.client.poll(0)).command!;
    assert.equal(second.id, id);
    assert.equal(second.attempt, 2);
    assert.notEqual(second.leaseId, first.leaseId);
    // The first attempt wakes up late: its result is refused.
    await expectStatus(alpha.client.report(id, { leaseId: first.leaseId, outcome: 'succeeded' }), 409, 'stale_lease');
    assert.equal((await job(id)).state, 'running');
    clock.advance(31_000);
    await t.cp.queue.reapExpired();
    const final = await job(id);
    assert.equal(final.state, 'failed');
    assert.equal(final.error?.code, 'lease_expired');
    assert.equal(final.attempts, 2);
    assert.equal((await alpha.client.poll(0)).command, null);
  });

  it('keeps a lease alive while the agent heartbeats', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('hb') });
    const c = (await alpha.client.poll(0)).command!;
    for (let i = 0; i < 4; i++) {
      clock.advance(20_000);
      await alpha.client.heartbeat({ version: 't', metrics: {}, running: [id] });
      await t.cp.queue.reapExpired();
    }
    assert.equal((await job(id)).state, 'running', '80 s later, still held thanks to heartbeats');
    await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'succeeded' });
  });

  it('times out a command whose agent heartbeats past its deadline', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('deadline'), timeoutSeconds: 60 });
    await alpha.client.poll(0);
    for (let i = 0; i < 6; i++) {
      clock.advance(20_000);
      await alpha.client.heartbeat({ version: 't', metrics: {}, running: [id] });
      await t.cp.queue.reapExpired();
    }
    const j = await job(id);
    assert.equal(j.state, 'timed_out');
  });

  it('applies a result once: a duplicate is acknowledged without change, a different outcome is refused', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('dup') });
    const c = (await alpha.client.poll(0)).command!;
    const r1 = await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { applied: 1 } });
    assert.deepEqual(r1, { status: 'applied', state: 'succeeded' });
    const r2 = await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'succeeded', outputs: { applied: 1 } });
    assert.deepEqual(r2, { status: 'duplicate', state: 'succeeded' });
    const r3 = await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'failed', error: { code: 'x', message: 'late', retryable: false } });
    assert.equal(r3.status, 'duplicate');
    const j = await job(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.outputs, { applied: 1 });
    await expectStatus(alpha.client.report(id, { leaseId: 'not-the-lease', outcome: 'failed' }), 409, 'stale_lease');
  });

  it('requeues a retryable failure while attempts remain', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('retry'), maxAttempts: 2 });
    const a1 = (await alpha.client.poll(0)).command!;
    await alpha.client.report(id, { leaseId: a1.leaseId, outcome: 'failed', error: { code: 'api_unavailable', message: 'try later', retryable: true } });
    assert.equal((await job(id)).state, 'queued');
    const a2 = (await alpha.client.poll(0)).command!;
    await alpha.client.report(id, { leaseId: a2.leaseId, outcome: 'failed', error: { code: 'api_unavailable', message: 'again', retryable: true } });
    const j = await job(id);
    assert.equal(j.state, 'failed');
    assert.equal(j.error?.message, 'again');
  });

  it('cancels a queued command at once', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('cq') });
    const c = (await t.admin.request<CommandView>('POST', `/v1/commands/${id}/cancel`)).body;
    assert.equal(c.state, 'cancelled');
    assert.equal((await alpha.client.poll(0)).command, null, 'a cancelled command is never claimed');
  });

  it("'ended' says each command's type, from a result, a cancellation and a lease expiry (the drift scheduler passes over what is not a flow)", async () => {
    const ended: CommandEnded[] = [];
    const on = (e: CommandEnded) => ended.push(e);
    t.cp.queue.events.on('ended', on);
    try {
      await drain(alpha);
      const reported = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('ended-result') });
      await drain(alpha);
      const cancelled = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('ended-cancel') });
      await t.admin.request('POST', `/v1/commands/${cancelled.id}/cancel`);
      const expired = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('ended-lease'), maxAttempts: 1 });
      assert.equal((await alpha.client.poll(0)).command?.id, expired.id);
      clock.advance(31_000);
      await t.cp.queue.reapExpired();
      assert.deepEqual(
        ended.map((e) => [e.id, e.state, e.type]),
        [
          [reported.id, 'succeeded', 'manifest'],
          [cancelled.id, 'cancelled', 'manifest'],
          [expired.id, 'failed', 'manifest'],
        ],
      );
    } finally {
      t.cp.queue.events.off('ended', on);
    }
  });

  it('cancels a running command through its agent (heartbeat and held poll)', async function () {
    this.timeout(15_000);
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('cr') });
    const c = (await alpha.client.poll(0)).command!;
    const held = alpha.client.poll(20); // a second slot is waiting for work
    await new Promise((r) => setTimeout(r, 100));
    const view = (await t.admin.request<CommandView>('POST', `/v1/commands/${id}/cancel`)).body;
    assert.equal(view.state, 'running');
    assert.equal(view.cancelRequested, true);
    assert.deepEqual((await held).cancel, [id], 'the held poll is woken with the cancellation');
    assert.deepEqual((await alpha.client.heartbeat({ version: 't', metrics: {}, running: [id] })).cancel, [id]);
    await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'cancelled' });
    assert.equal((await job(id)).state, 'cancelled');
  });

  it('computes agent status from heartbeats: healthy < 10 s, degraded 10-30 s, offline >= 30 s', async () => {
    const status = async () => (await t.admin.request<AgentView>('GET', `/v1/agents/${nodeA.identity.agentId}`)).body;
    await nodeA.client.heartbeat({ version: '1.2.3', metrics: { cpuPercent: 5, load: [0.1, 0.2, 0.3] }, running: [] });
    const fresh = await status();
    assert.equal(fresh.status, 'healthy');
    assert.equal(fresh.version, '1.2.3');
    assert.equal(fresh.metrics?.cpuPercent, 5);
    clock.advance(9_999);
    assert.equal((await status()).status, 'healthy');
    clock.advance(1);
    assert.equal((await status()).status, 'degraded');
    clock.advance(19_999);
    assert.equal((await status()).status, 'degraded');
    clock.advance(1);
    assert.equal((await status()).status, 'offline');
    await nodeA.client.heartbeat({ version: '1.2.3', metrics: {}, running: [] });
    assert.equal((await status()).status, 'healthy');
  });

  it('stores log lines with token-shaped secrets redacted, and refuses logs from a stale lease', async () => {
    const { id } = await submit({ target: { cluster: 'alpha' }, type: 'manifest', spec: manifest('logs') });
    const c = (await alpha.client.poll(0)).command!;
    await alpha.client.logs(id, c.leaseId, [
      { stream: 'stdout', text: 'hello' },
      { stream: 'stderr', text: `token tether_bt_abcdefghijkl.${'x'.repeat(43)} leaked` },
    ]);
    await expectStatus(alpha.client.logs(id, 'stale', [{ stream: 'stdout', text: 'no' }]), 409, 'stale_lease');
    const { lines } = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body;
    assert.deepEqual(lines.map((l) => l.text), ['hello', 'token tether_bt_[redacted] leaked']);
    await alpha.client.report(id, { leaseId: c.leaseId, outcome: 'succeeded' });
  });
});
