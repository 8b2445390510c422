/**
 * Upgrade: the data folder written by release 93cc861 (test/fixtures/upgrade-93cc861, made by its
 * make.ts on that commit) opened by the current code. Every migration added since runs forward,
 * and every cluster, agent, certificate, token and command is still there and usable: the old
 * agents authenticate with their certificates, queued and requeued commands are claimed, the old
 * tokens still work (or are still refused, for the revoked and the spent ones).
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { ManualClock } from '../../common/clock.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import type { InstanceVersionView, InstanceView } from '../../control-plane/bundles/bundles.wire.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/upgrade-93cc861');

interface Fixture {
  aid: string;
  migrations: string[];
  counts: Record<string, number>;
  commands: Record<string, { id: number; state: string }>;
  agents: { id: string; role: 'node' | 'cluster-agent'; cid: string; nid: string | null; revoked: boolean; keyPem: string; certPem: string }[];
  tokens: { admin: string; api: string; revokedApi: string; unspentBootstrap: { clusterAgent: string; node: string } };
  vpnUser: string;
  instance: string;
}

async function refused(p: Promise<unknown>, status: number): Promise<HttpError> {
  const err = await p.then(
    () => assert.fail(`expected a ${status} refusal`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HttpError, `expected an HttpError, got ${String(err)}`);
  assert.equal(err.status, status, `${err.code}: ${err.message}`);
  return err;
}

describe('upgrade: a data folder from release 93cc861', function () {
  before(function () {
    sqliteOnly(this, 'the fixture is a SQLite data folder written by release 93cc861');
  });
  this.timeout(60_000);
  const fx = JSON.parse(readFileSync(join(FIXTURE, 'fixture.json'), 'utf8')) as Fixture;
  let dir: string;
  let t: TestControlPlane;
  const clock = new ManualClock();
  const clients: AgentClient[] = [];
  const agentClient = (id: string) => {
    const a = fx.agents.find((x) => x.id === id)!;
    const c = new AgentClient(t.url, { certPem: a.certPem, keyPem: a.keyPem, caPem: t.caPem });
    clients.push(c);
    return c;
  };
  const byRole = (role: string, cid: string, nid: string | null = null) => fx.agents.find((a) => a.role === role && a.cid === cid && a.nid === nid && !a.revoked)!;
  const command = async (id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const count = (table: string) => {
    const db = new SQLite(join(dir, 'tether.db'), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  before(async () => {
    dir = tempDir('tether-upgrade-');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of ['tether.db', 'ca.crt', 'ca.key', 'admin-token']) {
      copyFileSync(join(FIXTURE, f), join(dir, f));
      chmodSync(join(dir, f), f === 'ca.crt' ? 0o644 : 0o600);
    }
    // No reaper: the fixture's running commands are checked as they were written, then reaped by
    // hand with the clock an hour past their leases' expiry (not today's date: see that test).
    t = await startTestControlPlane({ dataDir: dir }, { reaper: false, clock });
  });
  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
    if (dir) removeDir(dir);
  });

  it('runs every migration since, keeping the old ones applied', () => {
    const db = new SQLite(join(dir, 'tether.db'), { readonly: true });
    const applied = (db.prepare('SELECT name FROM kysely_migration ORDER BY name').all() as { name: string }[]).map((r) => r.name);
    db.close();
    assert.deepEqual(fx.migrations, ['0001_initial', '0002_vpn', '0003_bundles']);
    assert.ok(applied.includes('0006_instance_versions'), 'the versions table was added');
    for (const m of fx.migrations) assert.ok(applied.includes(m), `${m} still recorded`);
    assert.deepEqual(applied, [...applied].sort(), 'numbered in order');
  });

  it('keeps every row the old release wrote', () => {
    for (const [table, n] of Object.entries(fx.counts)) assert.equal(count(table), n, table);
  });

  it('serves the old account with its admin token and its API token; the revoked API token stays refused', async () => {
    assert.equal(t.aid, fx.aid);
    const api = new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: fx.tokens.api });
    const old = new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: fx.tokens.revokedApi });
    try {
      assert.equal((await api.request<{ aid: string }>('GET', '/v1/whoami')).body.aid, fx.aid);
      await refused(old.request('GET', '/v1/whoami'), 401);
    } finally {
      api.close();
      old.close();
    }
    const clusters = (await t.admin.request<{ clusters: { cid: string; domain: string }[] }>('GET', '/v1/clusters')).body.clusters;
    assert.deepEqual(clusters.map((c) => c.cid).sort(), ['edge2', 'prod1']);
    assert.equal(clusters.find((c) => c.cid === 'edge2')!.domain, `edge2.${fx.aid}.example.test`);
  });

  it('lists every agent, revoked or not, as the old release left it', async () => {
    const list = (await t.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents')).body.agents;
    for (const a of fx.agents) {
      const v = list.find((x) => x.id === a.id);
      assert.ok(v, `agent ${a.id}`);
      assert.equal(v.role, a.role);
      assert.equal(v.cid, a.cid);
      assert.equal(v.nid, a.nid);
      assert.equal(v.revoked, a.revoked);
    }
    assert.equal(list.length, fx.agents.length);
  });

  it('finds every command in the state it was left in, with its logs, outputs and errors', async () => {
    for (const [name, c] of Object.entries(fx.commands)) assert.equal((await command(c.id)).state, c.state, `${name} (#${c.id})`);
    const done = await command(fx.commands.succeeded!.id);
    assert.deepEqual(done.outputs, { applied: 1 });
    assert.equal(done.idempotencyKey, 'fixture-succeeded');
    assert.equal((await command(fx.commands.failed!.id)).error?.code, 'apply_failed');
    assert.equal((await command(fx.commands.timedOut!.id)).error?.code, 'timed_out');
    assert.equal((await command(fx.commands.runningCancelRequested!.id)).cancelRequested, true);
    const logs = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${fx.commands.succeeded!.id}/logs`)).body.lines;
    assert.deepEqual(logs.map((l) => l.text), ['configmap/done created', 'a warning']);
    // The idempotency key still maps to the old command.
    const again = await t.admin.request<{ id: number; created: boolean }>('POST', '/v1/commands', {
      target: { cluster: 'prod1' },
      type: 'manifest',
      spec: { manifests: 'kind: ConfigMap\n' },
      idempotencyKey: 'fixture-queued',
    });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, fx.commands.queuedCluster!.id);
  });

  it('keeps the bundle source, the instance and the VPN', async () => {
    const inst = (await t.admin.request<InstanceView>('GET', `/v1/instances/${fx.instance}`)).body;
    assert.equal(inst.cluster, 'prod1');
    assert.equal(inst.job.id, fx.commands.instanceJob!.id);
    assert.equal(inst.inputs.message, 'from 93cc861');
    // Migration 0006 backfilled version 1 of its desired state: its commit, inputs and job.
    assert.equal(inst.version, 1);
    const versions = (await t.admin.request<{ versions: InstanceVersionView[] }>('GET', `/v1/instances/${fx.instance}/versions`)).body.versions;
    assert.equal(versions.length, 1);
    assert.equal(versions[0]!.version, 1);
    assert.equal(versions[0]!.action, 'deploy');
    assert.equal(versions[0]!.bundle.commit, inst.bundle.commit);
    assert.deepEqual(versions[0]!.inputs, inst.inputs);
    assert.equal(versions[0]!.job?.id, fx.commands.instanceJob!.id);
    const bundles = (await t.admin.request<{ bundles: { name: string }[] }>('GET', '/v1/bundles')).body.bundles;
    assert.deepEqual(bundles.map((b) => b.name), ['webapp']);
    const vpn = (await t.admin.request<{ nodes: { nid: string; endpoint: string | null }[]; users: { id: string }[] }>('GET', '/v1/clusters/prod1/vpn')).body;
    assert.deepEqual(vpn.nodes.map((n) => n.nid).sort(), ['node-a', 'node-b']);
    assert.ok(vpn.nodes.every((n) => n.endpoint?.startsWith('192.0.2.')));
    assert.deepEqual(vpn.users.map((u) => u.id), [fx.vpnUser]);
  });

  it('reaps the old expired leases: the running command is requeued, the one being cancelled ends cancelled', async () => {
    // An hour after the fixture's leases expired, whatever today's date: its running commands (a
    // day's timeout from their claim on the day the fixture was made) are then past their lease
    // but not their deadline. The real date would have them timed out from a day after that.
    const db = new SQLite(join(dir, 'tether.db'), { readonly: true, fileMustExist: true });
    const expired = Number(db.prepare("SELECT max(lease_expires_at) FROM commands WHERE state = 'running'").pluck().get());
    db.close();
    clock.set(expired + 3600_000);
    assert.ok((await t.cp.queue.reapExpired()) >= 2);
    clock.set(Date.now()); // back to real time: certificates issued from here on are valid now
    const requeued = await command(fx.commands.running!.id);
    assert.equal(requeued.state, 'queued');
    assert.equal(requeued.attempts, 1);
    assert.equal((await command(fx.commands.runningCancelRequested!.id)).state, 'cancelled');
  });

  it('the old agents authenticate with their certificates and claim their queued commands in order', async () => {
    const cluster = agentClient(byRole('cluster-agent', 'prod1').id);
    await cluster.heartbeat({ running: [] });
    for (const id of [fx.commands.running!.id, fx.commands.queuedCluster!.id, fx.commands.queuedCluster2!.id, fx.commands.instanceJob!.id]) {
      const claim = (await cluster.poll(0)).command;
      assert.equal(claim?.id, id);
      assert.equal((await cluster.report(id, { leaseId: claim.leaseId, outcome: 'succeeded' })).status, 'applied');
    }
    assert.equal((await cluster.poll(0)).command, null);
    assert.equal((await command(fx.commands.instanceJob!.id)).state, 'succeeded');

    // The edge2 agent renewed its certificate under the old release: the renewed one is accepted.
    const edge = agentClient(byRole('cluster-agent', 'edge2').id);
    assert.equal((await edge.poll(0)).command?.id, fx.commands.queuedEdge!.id);

    // node-b claims what was queued for it (a VPN sync, then a preflight); node-a its VPN sync.
    const nodeB = agentClient(byRole('node', 'prod1', 'node-b').id);
    const first = (await nodeB.poll(0)).command!;
    assert.equal(first.type, 'vpn-sync');
    await nodeB.report(first.id, { leaseId: first.leaseId, outcome: 'succeeded' });
    assert.equal((await nodeB.poll(0)).command?.id, fx.commands.queuedNode!.id);
    const nodeA = agentClient(byRole('node', 'prod1', 'node-a').id);
    assert.equal((await nodeA.poll(0)).command?.type, 'vpn-sync');
  });

  it('still refuses the agent revoked before the upgrade', async () => {
    const revoked = fx.agents.find((a) => a.revoked)!;
    await refused(agentClient(revoked.id).poll(0), 403);
  });

  it('an unspent bootstrap token from the old release still enrols an agent; a spent one does not', async () => {
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: t.url, caPem: t.caPem, token: fx.tokens.unspentBootstrap.node, keys, nodeName: 'node-c' });
    assert.equal(id.cid, 'prod1');
    assert.equal(id.nid, 'node-c');
    const fresh = new AgentClient(t.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: t.caPem });
    clients.push(fresh);
    await fresh.heartbeat({ running: [] });
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token: fx.tokens.unspentBootstrap.node, keys: generateKeyPair(), nodeName: 'node-d' }), 401);
    // New rows get ids after the old ones.
    const sub = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'prod1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' } });
    assert.ok(sub.body.id > Math.max(...Object.values(fx.commands).map((c) => c.id)));
  });
});
