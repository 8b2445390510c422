/**
 * Several control-plane replicas, seen by an agent. Two real control planes over real mutual TLS;
 * on SQLite two servers cannot share one database, so here the second is a copy of the first's
 * data folder (`tether backup` while it serves, then `tether restore`): the same CA, the same agent
 * identity, the same claimed command and lease. What is tested is the agent's side: it moves to
 * the other replica when its own goes away or drains, carrying its results outbox, which the other
 * replica fences by the lease id as one would.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AgentRuntime, type Outcome } from '../../common/agent/runtime.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { Http2Client } from '../../common/http2-client.ts';
import { ReadinessCheck } from '../../control-plane/http/health.routes.ts';
import { Dispatcher } from '../../control-plane/queue/dispatcher.ts';
import { MIN_RETRY_AFTER_S, RETURN_RATE_PER_SECOND } from '../../control-plane/queue/drain.plan.ts';
import { startControlPlane, type ControlPlane } from '../../control-plane/app.ts';
import { decryptCaKey, encryptCaKey, parseKeyEncryptionKey } from '../../control-plane/pki/shared-ca.ts';
import type { TetherError } from '../../common/errors.ts';
import { readSse } from '../../control-plane/cli/sse.ts';
import { InProcessNotifier, NotifierHub } from '../../control-plane/queue/notifier.ts';
import { PostgresNotifier } from '../../control-plane/queue/notifier.postgres.ts';
import pg from 'pg';
import { adminQuery, freshDatabase, onPostgres, sqliteOnly } from '../support/postgres.ts';

/**
 * These start their own PostgreSQL in every pass: in the second pass of CI (TETHER_TEST_DATABASE=postgres)
 * they would repeat the first one's run, so they say so and stand down.
 */
function oncePerRun(ctx: Mocha.Context): void {
  if (!onPostgres) return;
  process.stdout.write('      (on PostgreSQL in the first pass already: not repeated)\n');
  ctx.skip();
}
import { FileOutbox } from '../../common/agent/outbox.ts';
import { silentLogger } from '../../common/logger.ts';
import { HttpClient, type HttpError } from '../../common/http-client.ts';
import type { CommandView } from '../../common/wire.ts';
import { backupDataDir, restoreDataDir } from '../../control-plane/backup/backup.ts';
import { eventually, freePort, removeDir, spawnControlPlane, startTestControlPlane, stopProcess, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

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

  it('moves to B when A goes away mid-command; the result in its outbox is delivered to B and fenced there by the lease', async function () {
    sqliteOnly(this, 'two SQLite copies of one data folder; on PostgreSQL the replicas below share one database');
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
    // The lines emitted after A went away reached B too (before the result: the runtime ships them first).
    const lines = (await b.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body.lines.map((l) => l.text);
    assert.ok(lines.includes('finished on whichever replica answers') && lines.includes('succeeded'), JSON.stringify(lines));
    assert.ok(moves.length >= 1 && moves[0]!.from === a.url && moves[0]!.to === b.url, JSON.stringify(moves));
    assert.ok(moves.every((m) => m.reason === 'unreachable' || m.reason === 'draining'), JSON.stringify(moves));
    // Delivered once (the outbox is empty: once the answer came, which with result?next waits out
    // the next poll's hold, up to pollWaitSeconds); a report under another lease is fenced on B as on A.
    await eventually(async () => (await new FileOutbox(outboxDir).list()).length === 0, 10_000, 'the outbox emptied once the result was acknowledged');
    assert.deepEqual(await new FileOutbox(outboxDir).list(), []);
    await assert.rejects(client.report(id, { leaseId: 'not-this-attempts-lease', outcome: 'failed' }), (e: HttpError) => e.status === 409 && e.code === 'stale_lease');
    assert.equal((await job(b, id)).state, 'succeeded');
  });

  it('with one URL, a failure does not replace the client: the transport reconnects to the restarted control plane', async () => {
    const port = await freePort();
    const a = await startTestControlPlane({ port });
    planes.push(a);
    dirs.push(a.dataDir);
    await a.createCluster('one1');
    const agent = await a.agent('one1', 'cluster-agent');
    agent.client.close();
    const moves: unknown[] = [];
    const client = clientFor([a.url], a, agent, { onMove: (m) => moves.push(m) });
    assert.equal((await client.poll(0)).command, null);
    const before = client.connections;
    await a.close();
    planes.splice(planes.indexOf(a), 1);
    await assert.rejects(client.poll(0), /cannot reach|closed before an answer/);
    const again = await startTestControlPlane({ dataDir: a.dataDir, port });
    planes.push(again);
    assert.equal((await client.poll(0)).command, null);
    assert.deepEqual(moves, []);
    assert.equal(client.moves, 0);
    assert.equal(client.connections, before + 1);
  });

  it('walks one name with several addresses: A on 127.0.0.1 and B on 127.0.0.2, one port, https://localhost', async function () {
    sqliteOnly(this, 'two SQLite copies of one data folder; on PostgreSQL the replicas below share one database');
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

describe('replicas: /healthz, /readyz and the drain on SIGTERM', function () {
  this.timeout(60_000);

  it('/readyz is 200 when the database answers with this version\'s schema, 503 schema_newer after a newer replica migrated it', async () => {
    const t = await startTestControlPlane();
    try {
      // No token, no body: a load balancer's probe.
      const probe = new HttpClient({ baseUrl: t.url, ca: t.caPem });
      try {
        assert.deepEqual((await probe.request('GET', '/healthz')).body, { ok: true });
        // A migration this binary does not know, as a newer replica would leave it (the readiness result is cached for 1 s).
        await t.cp.db.insertInto('kysely_migration' as never).values({ name: '9999_from_the_future', timestamp: new Date().toISOString() } as never).execute();
        const newer = await eventually(async () => {
          const r = await probe.request<{ error: { code: string; message: string } }>('GET', '/readyz', undefined, { accept: [503] });
          return r.status === 503 ? r : undefined;
        }, 5000, '/readyz to see the newer schema');
        assert.equal(newer.body.error.code, 'schema_newer');
        assert.match(newer.body.error.message, /9999_from_the_future/);
        assert.equal(newer.headers['retry-after'], '1');
        await t.cp.db.deleteFrom('kysely_migration' as never).where('name' as never, '=', '9999_from_the_future' as never).execute();
        const ready = await eventually(async () => {
          const r = await probe.request<{ ready: boolean }>('GET', '/readyz', undefined, { accept: [503] });
          return r.status === 200 ? r : undefined;
        }, 5000, '/readyz to be ready again');
        assert.deepEqual(ready.body, { ready: true });
      } finally {
        probe.close();
      }
    } finally {
      await t.close();
      removeDir(t.dataDir);
    }
  });

  it('readiness names each failed check: draining first, a database that does not answer in time, pending migrations', async () => {
    let draining = false;
    let ping: () => Promise<unknown> = async () => 1;
    let status = { pending: [] as string[], unknown: [] as string[] };
    const fresh = () => new ReadinessCheck({ draining: () => draining, ping: () => ping(), migrationStatus: async () => status, timeoutMs: 50 });
    assert.deepEqual(await fresh().check(), { ok: true });
    ping = () => new Promise(() => {}); // a database that never answers
    assert.equal(((await fresh().check()) as { code: string }).code, 'database_unavailable');
    ping = async () => {
      throw new Error('connection refused');
    };
    assert.match(((await fresh().check()) as { message: string }).message, /unavailable: connection refused/);
    ping = async () => 1;
    status = { pending: ['0011_shared_identity'], unknown: [] };
    assert.deepEqual(await fresh().check(), { ok: false, code: 'migrations_pending', message: 'migrations not applied yet: 0011_shared_identity' });
    const cached = fresh();
    status = { pending: [], unknown: [] };
    assert.deepEqual(await cached.check(), { ok: true });
    draining = true; // never cached: the first probe after SIGTERM sees it
    assert.equal(((await cached.check()) as { code: string }).code, 'draining');
  });

  it('SIGTERM: a held poll is answered 503 draining with Retry-After at once, new connections are refused, the server exits 0', async () => {
    const dataDir = tempDir('tether-drain-');
    const port = await freePort();
    const server = await spawnControlPlane(dataDir, port);
    try {
      const caPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
      const admin = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() });
      await admin.request('POST', '/v1/clusters', { cid: 'dr1' });
      const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'dr1', role: 'cluster-agent' })).body.token;
      admin.close();
      const keys = generateKeyPair();
      const id = await bootstrapAgent({ url: server.url, caPem, token, keys });
      const h2 = new Http2Client({ baseUrl: server.url, ca: caPem, cert: id.certificate, key: keys.privateKeyPem });
      try {
        assert.equal((await h2.request<{ command: null }>('GET', '/v1/agent/poll?wait=0')).body.command, null);
        const held = h2.request<{ error: { code: string } }>('GET', '/v1/agent/poll?wait=60', undefined, { accept: [503], timeoutMs: 70_000 });
        // Held now (the long-polls gauge says so), then SIGTERM.
        const metrics = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: readFileSync(join(dataDir, 'metrics-token'), 'utf8').trim() });
        await eventually(async () => /tether_long_polls_held 1\b/.test(String((await metrics.request('GET', '/metrics?name=tether_long_polls_held')).body)), 5000, 'the poll to be held');
        metrics.close();
        const exited = stopProcess(server.proc, 'SIGTERM');
        const answer = await held;
        assert.equal(answer.status, 503);
        assert.equal(answer.body.error.code, 'draining');
        // When to come back (drain.plan.ts): one agent held, a spread of one second from the earliest.
        assert.equal(answer.headers['retry-after'], String(MIN_RETRY_AFTER_S));
        assert.equal(await exited, 0, server.output());
        assert.match(server.output(), /control plane stopped/);
        // An expected answer, not an error logged with its stack per agent.
        assert.doesNotMatch(server.output(), /request failed/);
        // Gone: a new connection is refused.
        const probe = new HttpClient({ baseUrl: server.url, ca: caPem });
        await assert.rejects(probe.request('GET', '/healthz'), /ECONNREFUSED/);
        probe.close();
      } finally {
        h2.close();
      }
    } finally {
      if (server.proc.exitCode === null) await stopProcess(server.proc, 'SIGKILL');
      removeDir(dataDir);
    }
  });
});

describe('replicas: wake-ups between dispatchers (in-process hub)', () => {
  const key = Dispatcher.key('ab12c', 'c1', null);

  it('work, cancellations and revocations published on A wake the polls held on B; A is not told its own', async () => {
    const hub = new NotifierHub();
    const a = new Dispatcher({ notifier: new InProcessNotifier(hub) });
    const b = new Dispatcher({ notifier: new InProcessNotifier(hub) });
    const revokedOnB: string[] = [];
    b.onRevoked((id) => revokedOnB.push(id));
    const changedOnB: [number, number | undefined][] = [];
    b.onCommandChanged((id, from) => changedOnB.push([id, from]));
    const changedOnA: number[] = [];
    a.onCommandChanged((id) => changedOnA.push(id));

    const onB = b.wait(key, 'ag-1', 30_000);
    assert.equal(a.notify(key), false); // nobody held on A
    assert.equal(await onB, 'work');

    const cancelled = b.wait(key, 'ag-1', 30_000);
    a.notifyAgent('ag-1');
    assert.equal(await cancelled, 'agent');

    const revoked = b.wait(key, 'ag-2', 30_000);
    a.revokeAgent('ag-2');
    assert.equal(await revoked, 'revoked');
    assert.deepEqual(revokedOnB, ['ag-2']);
    assert.equal(await b.wait(key, 'ag-2', 30_000), 'revoked'); // never held again on B either

    a.commandChanged(7, 42);
    a.commandChanged(8);
    b.commandChanged(9);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(changedOnB, [[7, 42], [8, undefined]]);
    assert.deepEqual(changedOnA, [9]);
    await Promise.all([a.notifier.close(), b.notifier.close()]);
  });

  it('a sweep wakes one held poll of each key with queued work, and only those', async () => {
    const d = new Dispatcher({ notifier: new InProcessNotifier(new NotifierHub()) });
    const other = Dispatcher.key('ab12c', 'c2', 'n1');
    const first = d.wait(key, 'ag-1', 30_000);
    const second = d.wait(key, 'ag-2', 30_000);
    const elsewhere = d.wait(other, 'ag-3', 100);
    assert.deepEqual(d.heldKeys.sort(), [key, other].sort());
    assert.equal(d.sweep([key, Dispatcher.key('zz999', 'c9', null)]), 1);
    assert.equal(await first, 'sweep');
    assert.equal(d.held, 2);
    assert.equal(await elsewhere, 'timeout');
    assert.equal(d.sweep([key]), 1);
    assert.equal(await second, 'sweep');
  });

  it('drain answers held polls and every later one as draining', async () => {
    const d = new Dispatcher();
    const held = d.wait(key, 'ag-1', 30_000);
    const others = Array.from({ length: 2500 }, (_, i) => d.wait(Dispatcher.key('ab12c', `c${i}`, null), `ag-x${i}`, 30_000));
    d.drain();
    // Sized by what was held: 2,501 agents come back over ⌈2,501 / RETURN_RATE_PER_SECOND⌉ s (drain.plan.ts).
    assert.equal(d.drainSpreadSeconds, Math.ceil(2501 / RETURN_RATE_PER_SECOND));
    assert.ok(d.drainSpreadSeconds > 1);
    assert.equal(await held, 'draining');
    assert.ok((await Promise.all(others)).every((r) => r === 'draining'));
    assert.equal(await d.wait(key, 'ag-1', 30_000), 'draining');
    assert.equal(d.held, 0);
  });

  it('drops a malformed command wake-up', async () => {
    const hub = new NotifierHub();
    const from = new InProcessNotifier(hub);
    const d = new Dispatcher({ notifier: new InProcessNotifier(hub) });
    const seen: number[] = [];
    d.onCommandChanged((id) => seen.push(id));
    for (const p of ['x', '0', '-1', '1:', '1:0', '99999999999999999', '3']) from.publish('command', p);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, [3]);
  });
});

describe('replicas: wake-ups over PostgreSQL LISTEN/NOTIFY (a real PostgreSQL)', function () {
  before(function () {
    oncePerRun(this);
  });
  this.timeout(60_000);
  const open: PostgresNotifier[] = [];
  const notifier = async (url: string) => {
    const n = new PostgresNotifier({ url, log: silentLogger() });
    await n.start();
    open.push(n);
    return n;
  };
  afterEach(async () => {
    for (const n of open.splice(0)) await n.close();
  });

  it('a poll held on B is woken by work published on A, in milliseconds; A hears nothing of its own; cancellations and revocations too', async () => {
    const url = await freshDatabase();
    const a = new Dispatcher({ notifier: await notifier(url) });
    const b = new Dispatcher({ notifier: await notifier(url) });
    const key = Dispatcher.key('ab12c', 'c1', null);
    const heardOnA: string[] = [];
    a.notifier.subscribe((topic, payload) => heardOnA.push(`${topic} ${payload}`));
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const held = b.wait(key, 'ag-1', 30_000);
      const t0 = process.hrtime.bigint();
      a.notify(key);
      assert.equal(await held, 'work');
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    latencies.sort((x, y) => x - y);
    // Reported, not asserted (2 shared cores): the sweep is 60 s here, so 'work' can only have come from A's NOTIFY.
    process.stdout.write(`      wake-up A -> B over NOTIFY: p50 ${latencies[10]!.toFixed(1)} ms, max ${latencies[19]!.toFixed(1)} ms (20 wake-ups)\n`);
    const cancelled = b.wait(key, 'ag-1', 30_000);
    a.notifyAgent('ag-1');
    assert.equal(await cancelled, 'agent');
    const revokedOnB: string[] = [];
    b.onRevoked((id) => revokedOnB.push(id));
    const revoked = b.wait(key, 'ag-2', 30_000);
    a.revokeAgent('ag-2');
    assert.equal(await revoked, 'revoked');
    assert.deepEqual(revokedOnB, ['ag-2']);
    assert.deepEqual(heardOnA, []);
  });

  it('the listening connection is re-made when PostgreSQL ends it; held polls are swept at once on its return and later wake-ups arrive', async () => {
    const url = await freshDatabase();
    const na = await notifier(url);
    const nb = await notifier(url);
    const a = new Dispatcher({ notifier: na });
    const b = new Dispatcher({ notifier: nb });
    const key = Dispatcher.key('ab12c', 'c1', null);
    let resynced = 0;
    b.onResync(() => resynced++); // the replica drops its certificate cache then (a revocation notice may be lost)
    const held = b.wait(key, 'ag-1', 30_000);
    const pid = await nb.listener.backendPid();
    assert.ok(pid);
    await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
    // Back: the held poll is told to look at the queue (a wake-up may have been lost meanwhile).
    assert.equal(await held, 'sweep');
    assert.equal(nb.listener.connects, 2);
    assert.equal(resynced, 1);
    const next = b.wait(key, 'ag-1', 30_000);
    a.notify(key);
    assert.equal(await next, 'work');
  });

  it('drops notifications on its channel that are not a replica\'s', async () => {
    const url = await freshDatabase();
    const n = await notifier(url);
    const sender = await notifier(url);
    const heard: string[] = [];
    n.subscribe((topic, payload) => heard.push(`${topic}:${payload}`));
    // Anyone who can connect to the database can NOTIFY on its channels.
    const stranger = new pg.Client({ connectionString: url });
    await stranger.connect();
    try {
      for (const bad of ['x', 'r\tbogus\t1', 'r\twork', 'r\twork\tk\textra']) await stranger.query("SELECT pg_notify('tether_wake', $1)", [bad]);
    } finally {
      await stranger.end();
    }
    await eventually(() => n.stats.malformed === 4, 5000, 'the malformed notifications to arrive');
    sender.publish('work', 'ab12c/c1');
    await eventually(() => heard.length === 1, 5000, 'the valid notification');
    assert.deepEqual(heard, ['work:ab12c/c1']);
    assert.equal(n.stats.received, 1);
  });
});

describe('replicas: one identity from PostgreSQL (shared CA, ticket keys, accounts)', function () {
  before(function () {
    oncePerRun(this);
  });
  this.timeout(90_000);
  const kek = randomBytes(32).toString('base64');
  const started: ControlPlane[] = [];
  const dirs: string[] = [];
  const replica = async (databaseUrl: string, key: string | undefined = kek) => {
    const dataDir = tempDir('tether-replica-');
    dirs.push(dataDir);
    const cp = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir, databaseUrl, ...(key ? { caKeyEncryptionKey: key } : {}) }, { log: silentLogger() });
    started.push(cp);
    return { cp, dataDir };
  };
  afterEach(async () => {
    for (const cp of started.splice(0)) await cp.close().catch(() => undefined);
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('a second replica serves the first one\'s CA and accounts: an agent bootstrapped on A is known on B; the CA key is stored encrypted, never in B\'s folder', async () => {
    const url = await freshDatabase();
    const a = await replica(url);
    const b = await replica(url);
    assert.equal(b.cp.ca.caCertPem, a.cp.ca.caCertPem);
    assert.equal(readFileSync(join(b.dataDir, 'ca.crt'), 'utf8'), a.cp.ca.caCertPem);
    assert.notEqual(b.cp.ca.serverCertPem, a.cp.ca.serverCertPem); // each its own server certificate, from the one CA
    assert.equal(existsSync(join(b.dataDir, 'ca.key')), false);
    assert.equal(existsSync(join(a.dataDir, 'ca.key')), false);
    const row = await a.cp.db.selectFrom('shared_secrets').selectAll().where('name', '=', 'ca').executeTakeFirstOrThrow();
    assert.doesNotMatch(row.value, /PRIVATE KEY/);
    assert.match(JSON.parse(row.value).key.alg, /A256GCM/);

    // The account and its admin token (created by A) work on B.
    const token = readFileSync(join(a.dataDir, 'admin-token'), 'utf8').trim();
    assert.equal(existsSync(join(b.dataDir, 'admin-token')), false);
    const adminA = new HttpClient({ baseUrl: a.cp.url, ca: a.cp.ca.caCertPem, bearerToken: token });
    const adminB = new HttpClient({ baseUrl: b.cp.url, ca: b.cp.ca.caCertPem, bearerToken: token });
    try {
      await adminA.request('POST', '/v1/clusters', { cid: 'id1' });
      const bootstrap = (await adminB.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'id1', role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const id = await bootstrapAgent({ url: a.cp.url, caPem: a.cp.ca.caCertPem, token: bootstrap, keys });
      const onB = new AgentClient(b.cp.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: readFileSync(join(b.dataDir, 'ca.crt'), 'utf8') });
      try {
        assert.equal((await onB.request<{ agentId: string }>('GET', '/v1/agent/whoami')).agentId, id.agentId);
      } finally {
        onB.close();
      }
    } finally {
      adminA.close();
      adminB.close();
    }
  });

  it('a TLS session made with A resumes on B (shared ticket keys)', async () => {
    const url = await freshDatabase();
    const a = await replica(url);
    const b = await replica(url);
    const token = readFileSync(join(a.dataDir, 'admin-token'), 'utf8').trim();
    const admin = new HttpClient({ baseUrl: a.cp.url, ca: a.cp.ca.caCertPem, bearerToken: token });
    await admin.request('POST', '/v1/clusters', { cid: 'tk1' });
    const bootstrap = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'tk1', role: 'cluster-agent' })).body.token;
    admin.close();
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: a.cp.url, caPem: a.cp.ca.caCertPem, token: bootstrap, keys });
    const creds = { ca: a.cp.ca.caCertPem, cert: id.certificate, key: keys.privateKeyPem };
    const toA = new Http2Client({ baseUrl: a.cp.url, ...creds });
    await toA.request('GET', '/v1/agent/whoami');
    const session = await eventually(() => toA.lastTlsSession, 5000, 'a session ticket from A');
    toA.close();
    const toB = new Http2Client({ baseUrl: b.cp.url, ...creds, tlsSession: session });
    try {
      await toB.request('GET', '/v1/agent/whoami');
      assert.equal(toB.resumed, true, 'resumed on B with A\'s ticket');
    } finally {
      toB.close();
    }
  });

  it('a console session made on A works on B: the same cookie, and B accepts the CSRF token A gave (one session key, derived from the operator key)', async () => {
    const url = await freshDatabase();
    const a = await replica(url);
    const b = await replica(url);
    const token = readFileSync(join(a.dataDir, 'admin-token'), 'utf8').trim();
    const call = (cp: ControlPlane, method: string, path: string, headers: Record<string, string>, body?: unknown) =>
      new Promise<{ status: number; headers: import('node:http').IncomingHttpHeaders; json: any }>((resolve, reject) => {
        const text = body === undefined ? undefined : JSON.stringify(body);
        const h: Record<string, string> = { accept: 'application/json', ...headers, ...(text ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } : {}) };
        const req = https.request(new URL(path, cp.url), { method, headers: h, ca: cp.ca.caCertPem, agent: false }, (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (data += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: data ? JSON.parse(data) : undefined }));
        });
        req.on('error', reject);
        req.end(text);
      });
    const login = await call(a.cp, 'POST', '/v1/sessions', {}, { token });
    assert.equal(login.status, 201);
    const cookie = login.headers['set-cookie']![0]!.split(';')[0]!;
    const onB = await call(b.cp, 'GET', '/v1/sessions/current', { cookie });
    assert.equal(onB.status, 200);
    assert.equal(onB.json.csrfToken, login.json.csrfToken, 'B derives the same CSRF token');
    assert.equal((await call(b.cp, 'POST', '/v1/clusters', { cookie, 'x-csrf-token': login.json.csrfToken }, { cid: 'cs1' })).status, 201);
    assert.equal(existsSync(join(a.dataDir, 'session-key')), false, 'no session key file: it is derived');
  });

  it('a replica with another key refuses to start (the CA key does not decrypt); a malformed key is refused before anything', async () => {
    const url = await freshDatabase();
    await replica(url);
    await assert.rejects(replica(url, randomBytes(32).toString('base64')), (e: TetherError) => e.code === 'ca_key_decryption_failed');
    await assert.rejects(replica(url, 'too-short'), (e: TetherError) => e.code === 'invalid_ca_key_encryption_key' && !e.message.includes('too-short'));
    // The right key still works (nothing was changed by the refused starts).
    await replica(url);
  });

  it('encrypts with AES-256-GCM under the operator key: a changed byte or another key does not decrypt', () => {
    const key = parseKeyEncryptionKey(kek);
    const hex = parseKeyEncryptionKey(key.toString('hex'));
    assert.ok(hex.equals(key));
    const e = encryptCaKey('-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n', key);
    assert.equal(decryptCaKey(e, key), '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n');
    assert.notEqual(encryptCaKey('same', key).iv, encryptCaKey('same', key).iv);
    const flipped = Buffer.from(e.data, 'base64');
    flipped[0]! ^= 1;
    assert.throws(() => decryptCaKey({ ...e, data: flipped.toString('base64') }, key), /cannot be decrypted/);
    assert.throws(() => decryptCaKey(e, randomBytes(32)), /cannot be decrypted/);
    assert.throws(() => parseKeyEncryptionKey(randomBytes(16).toString('base64')), /32 bytes/);
  });
});

describe('replicas: two control planes on one PostgreSQL', function () {
  before(function () {
    oncePerRun(this);
  });
  this.timeout(90_000);
  const kek = randomBytes(32).toString('base64');
  let a: ControlPlane;
  let b: ControlPlane;
  let adminA: HttpClient;
  let adminB: HttpClient;
  const dirs: string[] = [];
  const clients: AgentClient[] = [];

  const start = async (databaseUrl: string) => {
    const dataDir = tempDir('tether-replica-');
    dirs.push(dataDir);
    // The sweep is set to a minute: a poll answered sooner was woken by the other replica's NOTIFY.
    return startControlPlane({ host: '127.0.0.1', port: 0, dataDir, databaseUrl, caKeyEncryptionKey: kek }, { log: silentLogger(), sweepMs: 60_000 });
  };
  const agentOn = async (cp: ControlPlane, cid: string) => {
    const token = (await adminA.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body.token;
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: cp.url, caPem: cp.ca.caCertPem, token, keys });
    const client = new AgentClient(cp.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: cp.ca.caCertPem });
    clients.push(client);
    return { id, client };
  };
  const submit = async (admin: HttpClient, cid: string) => (await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: cid }, type: 'manifest', spec: { manifests: 'kind: X' } })).body.id;
  const heldOn = (cp: ControlPlane, n: number) => eventually(() => cp.dispatcher.held >= n, 5000, `${n} poll(s) held`);

  before(async () => {
    const url = await freshDatabase();
    a = await start(url);
    b = await start(url);
    const token = readFileSync(a.adminTokenFile, 'utf8').trim();
    adminA = new HttpClient({ baseUrl: a.url, ca: a.ca.caCertPem, bearerToken: token });
    adminB = new HttpClient({ baseUrl: b.url, ca: b.ca.caCertPem, bearerToken: token });
  });
  after(async () => {
    for (const c of clients.splice(0)) c.close();
    adminA?.close();
    adminB?.close();
    await a?.close();
    await b?.close();
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('a command submitted on A is claimed by the poll held on B (woken by NOTIFY, not the sweep)', async () => {
    await adminA.request('POST', '/v1/clusters', { cid: 'wake1' });
    const { client } = await agentOn(b, 'wake1');
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const poll = client.poll(30);
      await heldOn(b, 1);
      const t0 = process.hrtime.bigint();
      const id = await submit(adminA, 'wake1');
      const got = await poll;
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      assert.equal(got.command?.id, id);
      await client.report(id, { leaseId: got.command!.leaseId, outcome: 'succeeded' });
      assert.equal((await adminA.request<CommandView>('GET', `/v1/commands/${id}`)).body.state, 'succeeded');
    }
    process.stdout.write(`      submit on A -> claim on B: ${latencies.map((l) => l.toFixed(0)).join(', ')} ms (sweep 60 s, poll held 30 s)\n`);
  });

  it('a lost wake-up costs a sweep, not the command: with A\'s notifications dropped, B\'s sweep finds the command', async () => {
    const url = await freshDatabase();
    const quietA = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: tempDir('tether-replica-'), databaseUrl: url, caKeyEncryptionKey: kek }, { log: silentLogger(), notifier: new InProcessNotifier(new NotifierHub()) });
    const sweepingB = await startControlPlane({ host: '127.0.0.1', port: 0, dataDir: tempDir('tether-replica-'), databaseUrl: url, caKeyEncryptionKey: kek }, { log: silentLogger(), sweepMs: 200 });
    dirs.push(quietA.config.dataDir, sweepingB.config.dataDir);
    const admin = new HttpClient({ baseUrl: quietA.url, ca: quietA.ca.caCertPem, bearerToken: readFileSync(quietA.adminTokenFile, 'utf8').trim() });
    try {
      await admin.request('POST', '/v1/clusters', { cid: 'lost1' });
      const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'lost1', role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const id = await bootstrapAgent({ url: sweepingB.url, caPem: sweepingB.ca.caCertPem, token, keys });
      const client = new AgentClient(sweepingB.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: sweepingB.ca.caCertPem });
      clients.push(client);
      const poll = client.poll(30);
      await heldOn(sweepingB, 1);
      const job = await submit(admin, 'lost1'); // A tells no one (a hub of its own)
      assert.equal((await poll).command?.id, job);
    } finally {
      admin.close();
      await quietA.close();
      await sweepingB.close();
    }
  });

  it('a cancellation made on A reaches the agent held on B; a revocation made on A ends its poll on B (403) and B refuses it from then on', async () => {
    await adminA.request('POST', '/v1/clusters', { cid: 'cancel1' });
    const { id: identity, client } = await agentOn(b, 'cancel1');
    const id = await submit(adminB, 'cancel1');
    const claimed = (await client.poll(0)).command!;
    assert.equal(claimed.id, id);
    const poll = client.poll(30);
    await heldOn(b, 1);
    await adminA.request('POST', `/v1/commands/${id}/cancel`);
    assert.deepEqual((await poll).cancel, [id]);

    const held = client.poll(30);
    held.catch(() => undefined); // its 403 may come before assert.rejects below is attached
    await heldOn(b, 1);
    await adminA.request('POST', `/v1/agents/${identity.agentId}/revoke`);
    await assert.rejects(held, (e: HttpError) => e.status === 403 && e.code === 'certificate_revoked');
    await assert.rejects(client.poll(0), (e: TetherError) => e.status === 403 || e.code === 'transport_error');
  });

  it('follow on B streams the lines and the end of a job whose agent reports through A', async () => {
    await adminA.request('POST', '/v1/clusters', { cid: 'follow1' });
    const { client } = await agentOn(a, 'follow1');
    const id = await submit(adminA, 'follow1');
    const claim = (await client.poll(0)).command!;
    await client.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'before follow' }]);
    const stream = await adminB.stream(`/v1/commands/${id}/logs?follow=1`);
    const events: { event: string; data: string }[] = [];
    let sawBefore!: () => void;
    const before = new Promise<void>((r) => (sawBefore = r));
    const reading = (async () => {
      for await (const ev of readSse(stream)) {
        events.push(ev);
        if (ev.event === 'log' && JSON.parse(ev.data).text === 'before follow') sawBefore();
        if (ev.event === 'end') break;
      }
      stream.destroy();
    })();
    await before; // B's follower is listening: what follows can only reach it as a relay of A's NOTIFY
    await client.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'live 1' }, { stream: 'stderr', text: 'live 2' }]);
    await eventually(() => events.some((e) => e.event === 'log' && JSON.parse(e.data).text === 'live 2'), 10_000, 'the live lines on B');
    await client.report(id, { leaseId: claim.leaseId, outcome: 'succeeded', outputs: { via: 'A' } });
    await reading;
    assert.deepEqual(events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data).text), ['before follow', 'live 1', 'live 2']);
    const end = JSON.parse(events.at(-1)!.data);
    assert.equal(end.state, 'succeeded');
    assert.deepEqual(end.outputs, { via: 'A' });
  });
});
