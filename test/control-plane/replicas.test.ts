/**
 * Several control-plane replicas, seen by an agent. Two real control planes over real mutual TLS;
 * on SQLite two servers cannot share one database, so here the second is a copy of the first's
 * data folder (`tether backup` while it serves, then `tether restore`): the same CA, the same agent
 * identity, the same claimed command and lease. What is tested is the agent's side: it moves to
 * the other replica when its own goes away or drains, carrying its results outbox, which the other
 * replica fences by the lease id as one would.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AgentRuntime, type Outcome } from '../../common/agent/runtime.ts';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { silentLogger } from '../../common/logger.ts';
import type { HttpError } from '../../common/http-client.ts';
import type { CommandView } from '../../common/wire.ts';
import { backupDataDir, restoreDataDir } from '../../control-plane/backup/backup.ts';
import { eventually, freePort, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

describe('replicas: an agent with several control-plane URLs', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const planes: TestControlPlane[] = [];
  const runtimes: AgentRuntime[] = [];
  const clients: AgentClient[] = [];

  /** A second replica: a copy of `a`'s data folder taken now, serving on `port` (and `host`). */
  const copyOf = async (a: TestControlPlane, port: number, host = '127.0.0.1') => {
    const dir = tempDir('tether-replica-');
    dirs.push(dir);
    await backupDataDir(a.dataDir, join(dir, 'copy.tgz'));
    await restoreDataDir(join(dir, 'copy.tgz'), join(dir, 'data'));
    const b = await startTestControlPlane({ dataDir: join(dir, 'data'), port, host, sans: ['127.0.0.2'] });
    planes.push(b);
    return b;
  };
  const job = async (t: TestControlPlane, id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const runtime = (client: AgentClient, execute: ConstructorParameters<typeof AgentRuntime>[0]['execute'], outboxDir: string) => {
    const r = new AgentRuntime({
      client,
      execute,
      log: silentLogger(),
      version: 'test',
      collectMetrics: () => ({ cpuPercent: 1 }),
      heartbeatIntervalMs: 200,
      pollWaitSeconds: 5,
      minBackoffMs: 50,
      maxBackoffMs: 200,
      outbox: new FileOutbox(outboxDir),
    });
    runtimes.push(r);
    r.start();
    return r;
  };
  const clientFor = (urls: string[], a: TestControlPlane, agent: TestAgent, o: ConstructorParameters<typeof AgentClient>[2] = {}) => {
    const c = new AgentClient(urls, { certPem: agent.identity.certificate, keyPem: agent.keys.privateKeyPem, caPem: a.caPem }, o);
    clients.push(c);
    return c;
  };

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((r) => r.stop(100)));
    for (const c of clients.splice(0)) c.close();
    for (const p of planes.splice(0)) await p.close().catch(() => undefined);
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('moves to B when A goes away mid-command; the result in its outbox is delivered to B and fenced there by the lease', async () => {
    const a = await startTestControlPlane();
    planes.push(a);
    dirs.push(a.dataDir);
    await a.createCluster('ha1');
    const agent = await a.agent('ha1', 'cluster-agent');
    agent.client.close();
    const portB = await freePort();
    const moves: { from: string; to: string; reason: string }[] = [];
    const client = clientFor([a.url, `https://127.0.0.1:${portB}`], a, agent, { onMove: (m) => moves.push(m) });

    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    let release!: (o: Outcome) => void;
    const outcome = new Promise<Outcome>((r) => (release = r));
    const outboxDir = join(tempDir('tether-outbox-'), 'outbox');
    dirs.push(join(outboxDir, '..'));
    runtime(client, async (_cmd, ctx) => {
      started();
      const o = await outcome;
      ctx.emit('finished on whichever replica answers');
      return o;
    }, outboxDir);

    const { id } = (await a.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'ha1' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body;
    await running;
    const claimed = await job(a, id);
    assert.equal(claimed.state, 'running');
    assert.equal(client.current, a.url);

    // B: the same data, the claimed command and its lease included. Then A goes away.
    const b = await copyOf(a, portB);
    assert.equal((await job(b, id)).state, 'running');
    await a.close();
    planes.splice(planes.indexOf(a), 1);

    release({ status: 'succeeded', outputs: { replica: 'any' } });
    const done = await eventually(async () => {
      const j = await job(b, id);
      return j.state === 'succeeded' ? j : undefined;
    }, 20_000, 'the result to reach B');
    assert.deepEqual(done.outputs, { replica: 'any' });
    assert.equal(client.current, b.url);
    assert.ok(moves.length >= 1 && moves[0]!.from === a.url && moves[0]!.to === b.url, JSON.stringify(moves));
    assert.ok(moves.every((m) => m.reason === 'unreachable' || m.reason === 'draining'), JSON.stringify(moves));
    // Delivered once (the outbox is empty); a report under another lease is fenced on B as on A.
    assert.deepEqual(await new FileOutbox(outboxDir).list(), []);
    await assert.rejects(client.report(id, { leaseId: 'not-this-attempts-lease', outcome: 'failed' }), (e: HttpError) => e.status === 409 && e.code === 'stale_lease');
    assert.equal((await job(b, id)).state, 'succeeded');
  });

  it('walks one name with several addresses: A on 127.0.0.1 and B on 127.0.0.2, one port, https://localhost', async () => {
    const port = await freePort();
    const a = await startTestControlPlane({ port, host: '127.0.0.1', sans: ['127.0.0.2'] });
    planes.push(a);
    dirs.push(a.dataDir);
    await a.createCluster('ha2');
    const agent = await a.agent('ha2', 'cluster-agent');
    agent.client.close();
    const b = await copyOf(a, port, '127.0.0.2');
    // A fake resolver (the test cannot edit the machine's DNS): localhost has both addresses.
    const lookups: string[] = [];
    const client = clientFor([`https://localhost:${port}`], a, agent, {
      resolveAll: async (host) => {
        lookups.push(host);
        return ['127.0.0.1', '127.0.0.2'];
      },
    });
    assert.equal((await client.poll(0)).command, null);
    await a.close();
    planes.splice(planes.indexOf(a), 1);
    // The first request after A left fails (that is what moves it); the next reaches B by the same name.
    await assert.rejects(client.poll(0), /cannot reach|closed before an answer/);
    assert.equal((await client.poll(0)).command, null);
    assert.equal(client.current, `https://localhost:${port} (127.0.0.2)`);
    assert.deepEqual(lookups, ['localhost']);
    void b;
  });
});
