/**
 * The queue's storage on PostgreSQL under the concurrency replicas bring: several pools (as
 * several replicas) on one database claiming, submitting and revoking at once. Runs in every
 * mocha run, on the real PostgreSQL of test/support/postgres.ts.
 */
import assert from 'node:assert/strict';
import { freshDatabase, requirePostgres } from '../support/postgres.ts';
import { openPostgres } from '../../control-plane/db/postgres.ts';
import type { Db } from '../../control-plane/db/database.ts';
import { insertAccount, insertCluster } from '../../control-plane/db/accounts.repository.ts';
import { getAgent, insertAgent, recordHeartbeat, revokeAgent } from '../../control-plane/db/agents.repository.ts';
import { completeAttempt, expireLeases, extendLeases, getCommandById, insertCommand } from '../../control-plane/db/commands.repository.ts';
import { appendLogs, readLogs } from '../../control-plane/db/logs.repository.ts';
import { claimNext } from '../../control-plane/db/claim.ts';

describe('PostgreSQL: the queue under replicas (several pools on one database)', function () {
  this.timeout(120_000);
  before(function () {
    requirePostgres(this);
  });
  let replicas: Db[];
  const AGENTS = ['ca-aaaaaaaaaa', 'ca-bbbbbbbbbb', 'ca-cccccccccc', 'ca-dddddddddd'];
  const submit = (db: Db, key: string | null = null) =>
    insertCommand(db, { aid: 'a1', cid: 'c1', nid: null, type: 'manifest', spec: '{"manifests":"kind: Namespace"}', idempotencyKey: key, timeoutSeconds: 600, maxAttempts: 3, now: 1000 });
  let leases = 0;
  const claim = (db: Db, agentId: string) => claimNext(db, { aid: 'a1', cid: 'c1', nid: null }, { agentId, leaseId: () => `l${++leases}`, leaseExpiresAt: 60_000, now: 2000 });

  beforeEach(async () => {
    const url = await freshDatabase();
    replicas = [0, 1, 2].map(() => openPostgres({ url, poolSize: 8, statementTimeoutMs: 30_000 }).db);
    const db = replicas[0]!;
    await insertAccount(db, { aid: 'a1', name: 'a', now: 1 });
    await insertCluster(db, { aid: 'a1', cid: 'c1', domain: 'c1.a1.test', now: 1 });
    for (const id of AGENTS) await insertAgent(db, { id, aid: 'a1', cid: 'c1', role: 'cluster-agent', nid: null, control_plane: 0, created_at: 1 });
  });
  afterEach(async () => {
    await Promise.all(replicas.map((db) => db.destroy()));
  });

  it('claims every command exactly once with 24 claimers on three replicas at once (FOR UPDATE SKIP LOCKED)', async () => {
    const N = 300;
    for (let i = 0; i < N; i++) await submit(replicas[i % 3]!);
    const taken: { id: number; agent: string; lease: string | null }[] = [];
    const claimer = async (db: Db, agent: string) => {
      for (;;) {
        const row = await claim(db, agent);
        if (!row) return;
        taken.push({ id: row.id, agent, lease: row.lease_id });
      }
    };
    await Promise.all(replicas.flatMap((db) => Array.from({ length: 8 }, (_, i) => claimer(db, AGENTS[i % AGENTS.length]!))));
    assert.equal(taken.length, N, 'every command claimed');
    assert.equal(new Set(taken.map((t) => t.id)).size, N, 'no command claimed twice');
    for (const t of taken) {
      const row = (await getCommandById(replicas[0]!, t.id))!;
      assert.equal(row.state, 'running');
      assert.equal(row.attempts, 1);
      assert.equal(row.claimed_by, t.agent);
      assert.equal(row.lease_id, t.lease, 'the stored lease is the claimer’s');
    }
  });

  it('submissions with one idempotency key through three replicas at once make one command', async () => {
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => submit(replicas[i % 3]!, 'same-key')));
    assert.equal(new Set(results.map((r) => r.row.id)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
  });

  it('a revoked agent claims nothing, even racing its revocation; what it claimed before has its lease ended by the revocation', async () => {
    for (let round = 0; round < 20; round++) {
      const agent = `ca-r${String(round).padStart(9, '0')}`;
      await insertAgent(replicas[0]!, { id: agent, aid: 'a1', cid: 'c1', role: 'cluster-agent', nid: null, control_plane: 0, created_at: 1 });
      for (let i = 0; i < 4; i++) await submit(replicas[0]!);
      const claims = Array.from({ length: 6 }, (_, i) => claim(replicas[1 + (i % 2)]!, agent));
      const revoked = revokeAgent(replicas[0]!, 'a1', agent, 5000);
      const rows = (await Promise.all(claims)).filter((r) => r !== undefined);
      assert.equal(await revoked, true);
      // Whatever it claimed, racing the revocation, has its lease ended (expiry at the revocation), so the reaper requeues it.
      for (const r of rows) assert.equal((await getCommandById(replicas[0]!, r.id))!.lease_expires_at, 5000, `round ${round}: command ${r.id} claimed by the revoked agent keeps a lease`);
      assert.equal(await claim(replicas[1]!, agent), undefined, 'a claim after the revocation takes nothing');
      await expireLeases(replicas[0]!, 5000);
      // Drain the queue for the next round.
      while (await claim(replicas[0]!, AGENTS[0]!));
    }
  });

  it('fences reports: of two replicas reporting one attempt, one applies; a stale lease applies nothing; leases extend up to the deadline', async () => {
    const { row } = await submit(replicas[0]!);
    const c = (await claim(replicas[1]!, AGENTS[0]!))!;
    assert.equal(c.id, row.id);
    await extendLeases(replicas[2]!, AGENTS[0]!, [c.id], 10_000_000_000, 30_000);
    assert.equal((await getCommandById(replicas[0]!, c.id))!.lease_expires_at, 2000 + 600_000 + 30_000, 'capped at claim + timeout + grace');
    const report = (db: Db, leaseId: string) => completeAttempt(db, { id: c.id, agentId: AGENTS[0]!, leaseId, now: 3000 }, { kind: 'final', state: 'succeeded', outputs: '{"a":1}', error: null });
    assert.equal(await report(replicas[0]!, 'not-the-lease'), undefined);
    const both = await Promise.all([report(replicas[1]!, c.lease_id!), report(replicas[2]!, c.lease_id!)]);
    assert.equal(both.filter((r) => r !== undefined).length, 1, 'one of two concurrent reports applies');
    const done = (await getCommandById(replicas[0]!, c.id))!;
    assert.equal(done.state, 'succeeded');
    assert.equal(done.finished_at, 3000);
    assert.equal(done.outputs, '{"a":1}');
  });

  it('heartbeats merge metrics (a later field wins, the others stay) and count; log appends through two replicas keep the cap', async () => {
    const id = AGENTS[1]!;
    await recordHeartbeat(replicas[0]!, id, { now: 10, version: '1.0', metrics: { cpuPercent: 5, rssBytes: 100 }, vpn: null });
    await recordHeartbeat(replicas[1]!, id, { now: 20, version: null, metrics: { cpuPercent: 7 }, vpn: null });
    const a = (await getAgent(replicas[2]!, id))!;
    assert.equal(a.last_heartbeat_at, 20);
    assert.equal(a.version, '1.0');
    assert.equal(a.heartbeats, 2);
    assert.deepEqual(JSON.parse(a.metrics!), { cpuPercent: 7, rssBytes: 100 });

    const { row } = await submit(replicas[0]!);
    const line = (i: number) => ({ ts: i, stream: 'stdout', text: 'x'.repeat(100) });
    // 40 appends of 5 lines each (20,000 bytes) against a 5,000-byte cap, through two replicas at once.
    await Promise.all(Array.from({ length: 40 }, (_, i) => appendLogs(replicas[i % 2]!, row.id, Array.from({ length: 5 }, (_, j) => line(i * 5 + j)), 5000)));
    const lines = await readLogs(replicas[0]!, row.id, 0, 1000);
    const kept = lines.filter((l) => l.stream === 'stdout');
    assert.equal(kept.length, 50, 'exactly the cap');
    const markers = lines.filter((l) => l.stream === 'system');
    assert.equal(markers.length, 1, 'one marker');
    assert.match(markers[0]!.text, /15000 bytes in 150 lines dropped/);
  });
});
