/**
 * The reads the web console makes (issue 14), on a real control plane over real TLS: the overview
 * against a seeded database (its numbers held against what the seed wrote, another account's rows
 * left out), the paginated lists (agents, commands with filters, API and bootstrap tokens) walked
 * page by page, and the enrol commands a new bootstrap token comes with, run for real
 * (`tether-node register` as printed; the helm command's values rendered by real helm).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../common/clock.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { sqliteOf } from '../../control-plane/db/database.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { seedConsoleData, seedConsoleDataDb, type SeedOptions, type Seeded } from '../support/seed.ts';
import { onPostgres } from '../support/postgres.ts';
import { toolPath } from '../support/toolchain.ts';

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('console reads: overview, paginated lists, enrol commands (real control plane)', function () {
  this.timeout(120_000);
  const clock = new ManualClock();
  let t: TestControlPlane;
  let seeded: Seeded;
  const get = async <T>(path: string) => (await t.admin.request<T>('GET', path)).body;

  before(async () => {
    t = await startTestControlPlane({}, { clock, reaper: false });
    // On the PostgreSQL pass the same rows go in through Kysely (the aggregates are what differs).
    const seed = async (o: SeedOptions) => (onPostgres ? seedConsoleDataDb(t.cp.db, o) : seedConsoleData(sqliteOf(t.cp.db), o));
    seeded = await seed({ aid: t.aid, clusters: 7, agents: 600, commands: 3000, now: clock.now() });
    // Another account's rows must not show.
    const other = await t.cp.accounts.createAccount('other');
    await seed({ aid: other.aid, clusters: 2, agents: 50, commands: 100, now: clock.now(), offset: 1_000_000 });
  });
  after(async () => {
    if (t) {
      await t.close();
      removeDir(t.dataDir);
    }
  });

  it('answers the overview with the numbers the seed wrote', async () => {
    const o = await get<any>('/v1/overview');
    assert.equal(o.generatedAt, new Date(clock.now()).toISOString());
    assert.equal(o.clustersTotal, 7);
    assert.deepEqual(o.clusters.map((c: { cid: string }) => c.cid), seeded.clusters);
    const sum = (a: { healthy: number; degraded: number; offline: number }, b: typeof a) => ({ healthy: a.healthy + b.healthy, degraded: a.degraded + b.degraded, offline: a.offline + b.offline });
    const total = { nodes: { healthy: 0, degraded: 0, offline: 0 }, clusterAgents: { healthy: 0, degraded: 0, offline: 0 } };
    for (const c of o.clusters) {
      const want = seeded.byCluster.get(c.cid)!;
      assert.equal(c.domain, `${c.cid}.${t.aid}.tether.local`);
      assert.deepEqual(c.nodes, want.nodes, c.cid);
      assert.deepEqual(c.clusterAgents, want.clusterAgents, c.cid);
      assert.deepEqual(c.agents, sum(want.nodes, want.clusterAgents), c.cid);
      total.nodes = sum(total.nodes, want.nodes);
      total.clusterAgents = sum(total.clusterAgents, want.clusterAgents);
    }
    assert.deepEqual(o.nodes, total.nodes);
    assert.deepEqual(o.clusterAgents, total.clusterAgents);
    assert.deepEqual(o.agents, sum(total.nodes, total.clusterAgents));
    for (const s of ['healthy', 'degraded', 'offline'] as const) assert.ok(o.nodes[s] > 0 && o.clusterAgents[s] > 0, `the seed has ${s} agents of both roles`);
    assert.deepEqual(o.commands, seeded.commands);
    assert.deepEqual(o.recentFailures.map((f: { id: number }) => f.id), seeded.failures.slice(0, 10));
    assert.match(o.recentFailures[0].error.message, /^seeded /);

    // Ten seconds on, the agents just under the healthy cut-off are degraded: status is computed at read time.
    clock.advance(10_000);
    const later = await get<any>('/v1/overview');
    assert.ok(later.agents.healthy < o.agents.healthy);
    assert.equal(later.agents.healthy + later.agents.degraded + later.agents.offline, o.agents.healthy + o.agents.degraded + o.agents.offline);
    clock.advance(-10_000);
  });

  it('pages through the agents (at most 200 a page), with cluster, role and status filters', async () => {
    const seen: AgentView[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: { agents: AgentView[]; nextCursor: string | null } = await get(`/v1/agents?limit=64${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(r.agents.length <= 64);
      seen.push(...r.agents);
      cursor = r.nextCursor;
      pages++;
    } while (cursor);
    assert.equal(seen.length, 600);
    assert.equal(pages, Math.ceil(600 / 64));
    assert.equal(new Set(seen.map((a) => a.id)).size, 600);
    const key = (a: AgentView) => `${a.cid}\0${a.createdAt}\0${a.id}`;
    assert.deepEqual(seen.map(key), [...seen.map(key)].sort(), 'in (cluster, creation, id) order');
    assert.equal((await get<{ agents: AgentView[] }>('/v1/agents')).agents.length, 200, 'the default page is 200');

    const healthyNodesOfC001 = (await get<{ agents: AgentView[]; nextCursor: string | null }>('/v1/agents?cluster=c001&role=node&status=healthy&limit=200'));
    const unrevoked = healthyNodesOfC001.agents.filter((a) => !a.revoked);
    assert.equal(unrevoked.length, seeded.byCluster.get('c001')!.nodes.healthy);
    assert.ok(healthyNodesOfC001.agents.every((a) => a.cid === 'c001' && a.role === 'node' && a.status === 'healthy'));
    assert.equal(healthyNodesOfC001.nextCursor, null);
    for (const status of ['degraded', 'offline'] as const) {
      const r = await get<{ agents: AgentView[] }>(`/v1/agents?cluster=c002&role=cluster-agent&status=${status}&limit=200`);
      assert.equal(r.agents.filter((a) => !a.revoked).length, seeded.byCluster.get('c002')!.clusterAgents[status], status);
      assert.ok(r.agents.every((a) => a.status === status));
    }

    for (const bad of ['limit=201', 'limit=0', 'cursor=!!', `cursor=${Buffer.from('[1]').toString('base64url')}`, 'cursor=bm90IGpzb24', 'status=asleep']) {
      const err = await t.admin.request<{ error: { code: string } }>('GET', `/v1/agents?${bad}`, undefined, { accept: [400] });
      assert.equal(err.status, 400, bad);
    }
    assert.equal((await t.admin.request<{ error: { code: string } }>('GET', '/v1/agents?cursor=bm90IGpzb24', undefined, { accept: [400] })).body.error.code, 'invalid_cursor');
  });

  it('pages through the commands newest first with cluster, type and state filters', async () => {
    const all: Omit<CommandView, 'outputs'>[] = [];
    let cursor: string | null = null;
    do {
      const r: { commands: CommandView[]; nextCursor: string | null } = await get(`/v1/commands?state=failed&limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      all.push(...r.commands);
      cursor = r.nextCursor;
    } while (cursor);
    assert.equal(all.length, seeded.commands.failed);
    assert.ok(all.every((c) => c.state === 'failed'));
    assert.deepEqual(all.map((c) => c.id), [...all.map((c) => c.id)].sort((a, b) => b - a));

    const helmOfC003 = await get<{ commands: CommandView[]; nextCursor: string | null }>('/v1/commands?cluster=c003&type=helm&state=succeeded&limit=20');
    assert.equal(helmOfC003.commands.length, 20);
    assert.ok(helmOfC003.commands.every((c) => c.target.cluster === 'c003' && c.type === 'helm' && c.state === 'succeeded'));
    const next = await get<{ commands: CommandView[] }>(`/v1/commands?cluster=c003&type=helm&state=succeeded&limit=20&cursor=${helmOfC003.nextCursor}`);
    assert.ok(next.commands[0]!.id < helmOfC003.commands.at(-1)!.id);
    // The older `before` still works as it did.
    const before = await get<{ commands: CommandView[] }>(`/v1/commands?cluster=c003&type=helm&state=succeeded&limit=20&before=${helmOfC003.commands.at(-1)!.id}`);
    assert.deepEqual(before.commands.map((c) => c.id), next.commands.map((c) => c.id));
    assert.equal((await t.admin.request('GET', '/v1/commands?type=nope', undefined, { accept: [400] })).status, 400);
  });

  it('lists API and bootstrap tokens a page at a time, with their state and never a secret', async () => {
    const made: { token: string; keyId: string }[] = [];
    for (let i = 0; i < 3; i++) {
      clock.advance(1); // after the admin token, one by one (ties are ordered by key id)
      made.push((await t.admin.request<{ token: string; keyId: string }>('POST', '/v1/api-tokens', { name: `t${i}` })).body);
    }
    await t.admin.request('DELETE', `/v1/api-tokens/${made[1]!.keyId}`);
    const p1 = await get<{ tokens: { keyId: string; name: string; state: string }[]; nextCursor: string }>('/v1/api-tokens?limit=2');
    assert.deepEqual(p1.tokens.map((x) => [x.name, x.state]), [['t2', 'active'], ['t1', 'revoked']]);
    const p2 = await get<{ tokens: { name: string; state: string }[]; nextCursor: string | null }>(`/v1/api-tokens?limit=2&cursor=${p1.nextCursor}`);
    assert.deepEqual(p2.tokens.map((x) => x.name), ['t0', 'default admin']);
    assert.equal(p2.nextCursor, null);

    const created = (await t.admin.request<{ token: string; id: string }>('POST', '/v1/tokens', { cluster: 'c000', role: 'node', controlPlane: false })).body;
    clock.advance(1);
    await t.admin.request('POST', '/v1/tokens', { cluster: 'c001', role: 'cluster-agent', ttlSeconds: 60 });
    clock.advance(61_000);
    const boot = await get<{ tokens: { id: string; cluster: string; role: string; state: string }[] }>('/v1/tokens');
    assert.deepEqual(boot.tokens.map((x) => [x.cluster, x.role, x.state]), [['c001', 'cluster-agent', 'expired'], ['c000', 'node', 'unused']]);
    assert.equal((await get<{ tokens: unknown[] }>('/v1/tokens?cluster=c000')).tokens.length, 1);
    const text = JSON.stringify([p1, p2, boot]);
    assert.ok(!text.includes(created.token.split('.')[1]!) && !made.some((m) => text.includes(m.token.split('.')[1]!)), 'no secret in a list');
    assert.ok(!/secret|hash/i.test(text));
    clock.advance(-61_000);
  });

  it('answers a new bootstrap token with the enrol command, which works as printed', async () => {
    const dir = tempDir('tether-enrol-');
    try {
      await t.createCluster('enrol');
      const node = (await t.admin.request<{ token: string; expiresAt: string; command: string; caCert: string; role: string }>('POST', '/v1/tokens', { cluster: 'enrol', role: 'node', controlPlane: false })).body;
      assert.equal(node.command, `tether-node register --token ${node.token} --aid ${t.aid} --control-plane 0 --server ${t.url} --ca-file ca.crt`);
      assert.equal(node.caCert, t.caPem);
      assert.equal(node.expiresAt, new Date(clock.now() + 3600_000).toISOString());
      writeFileSync(join(dir, 'ca.crt'), node.caCert);
      // As printed (split on spaces: it quotes nothing here), plus where this test keeps the node's files.
      const [bin, ...args] = node.command.split(' ');
      assert.equal(bin, 'tether-node');
      const reg = await run(join(REPO_ROOT, 'bin/tether-node'), [...args, '--config', join(dir, 'node/config.yaml'), '--name', 'console1', '--no-vpn'], dir, { TETHER_NODE_NO_HOST_CHANGES: '1' });
      assert.equal(reg.code, 0, reg.out);
      const agents = (await get<{ agents: AgentView[] }>('/v1/agents?cluster=enrol')).agents;
      assert.deepEqual(agents.map((a) => [a.role, a.nid]), [['node', 'console1']]);

      const ca = (await t.admin.request<{ token: string; command: string }>('POST', '/v1/tokens', { cluster: 'enrol', role: 'cluster-agent' })).body;
      assert.equal(
        ca.command,
        `helm install tether-agent charts/cluster-agent --namespace tether-system --create-namespace --set controlPlane.url=${t.url} --set-file controlPlane.caCert=ca.crt --set bootstrapToken=${ca.token}`,
      );
      // The chart takes these values: real helm renders it (`helm template` takes install's flags).
      mkdirSync(join(dir, 'charts'));
      const words = ca.command.split(' ');
      assert.deepEqual(words.slice(0, 2), ['helm', 'install']);
      const rendered = await run(toolPath('helm'), ['template', ...words.slice(2).map((w) => (w === 'charts/cluster-agent' ? join(REPO_ROOT, 'charts/cluster-agent') : w))], dir);
      assert.equal(rendered.code, 0, rendered.out);
      assert.ok(rendered.out.includes(Buffer.from(ca.token).toString('base64')) || rendered.out.includes(ca.token), 'the token reaches the chart');
      assert.ok(rendered.out.includes(t.url));
      assert.ok(rendered.out.includes('BEGIN CERTIFICATE'));
    } finally {
      removeDir(dir);
    }
  });
});
