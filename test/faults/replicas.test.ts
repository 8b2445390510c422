/**
 * Two control-plane replicas (`tether server`, real processes) on one real PostgreSQL, agents
 * (the real AgentRuntime, each with both URLs, in both orders) spread over them, submissions going
 * to either: `kill -9` of one replica (A and B in turn) while submissions, claims and reports are
 * in flight, the killed one restarted, repeated. Then: every acknowledged submission exists once
 * per idempotency key and succeeded; each was applied once, by the attempt whose lease it holds
 * (a late report under another attempt's lease is refused by either replica, 409); every agent moved off the killed replica
 * and was heard by the other again (the recovery time is printed: the backoff is 200 ms doubling,
 * jittered ×1–2). Iterations: TETHER_FAULT_ITERATIONS (npm run test:faults), else 3.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { AgentRuntime } from '../../common/agent/runtime.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { eventually, freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { freshDatabase, onPostgres } from '../support/postgres.ts';
import { captureLogger, faultIterations, untilAllTerminal } from './support.ts';

const ITERATIONS = faultIterations(3);
const AGENTS = 4;
const LEASE_SECONDS = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Replica = { dir: string; port: number; url: string; server?: Awaited<ReturnType<typeof spawnControlPlane>> };

describe(`faults: kill -9 of one of two replicas on PostgreSQL during submissions, claims and reports (${ITERATIONS} iterations)`, function () {
  this.timeout(90_000 + ITERATIONS * 30_000);
  const kek = randomBytes(32).toString('base64');
  let databaseUrl: string;
  const replicas: Replica[] = [];
  const admins: HttpClient[] = [];
  const runtimes: AgentRuntime[] = [];
  const clients: AgentClient[] = [];
  const logs = captureLogger('info');
  let db: pg.Client;

  const start = async (r: Replica) => {
    r.server = await spawnControlPlane(r.dir, r.port, ['--lease-seconds', String(LEASE_SECONDS), '--long-poll-seconds', '5'], {
      TETHER_DATABASE_URL: databaseUrl,
      TETHER_CA_KEY_ENCRYPTION_KEY: kek,
    });
  };

  before(async function () {
    // On PostgreSQL in every pass: CI's second pass (TETHER_TEST_DATABASE=postgres) would repeat it.
    if (onPostgres) {
      process.stdout.write('      (on PostgreSQL in the first pass already: not repeated)\n');
      this.skip();
    }
    databaseUrl = await freshDatabase();
    for (let i = 0; i < 2; i++) {
      const dir = tempDir('tether-replica-fault-');
      const port = await freePort();
      replicas.push({ dir, port, url: `https://127.0.0.1:${port}` });
    }
    for (const r of replicas) await start(r); // A first: it creates the account and the CA
    const [a, b] = replicas as [Replica, Replica];
    const caPem = readFileSync(join(a.dir, 'ca.crt'), 'utf8');
    assert.equal(readFileSync(join(b.dir, 'ca.crt'), 'utf8'), caPem, 'one CA for both replicas');
    const token = readFileSync(join(a.dir, 'admin-token'), 'utf8').trim();
    for (const r of replicas) admins.push(new HttpClient({ baseUrl: r.url, ca: caPem, bearerToken: token, timeoutMs: 5_000 }));
    await admins[0]!.request('POST', '/v1/clusters', { cid: 'replicas' });
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    for (let i = 0; i < AGENTS; i++) {
      const bootstrap = (await admins[i % 2]!.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'replicas', role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const urls = i % 2 === 0 ? [a.url, b.url] : [b.url, a.url];
      const id = await bootstrapAgent({ url: urls, caPem, token: bootstrap, keys });
      clients.push(new AgentClient(urls, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem }));
    }
  });
  after(async () => {
    await Promise.all(runtimes.map((r) => r.stop(100)));
    for (const c of clients) c.close();
    for (const a of admins) a.close();
    await db?.end().catch(() => undefined);
    for (const r of replicas) {
      if (r.server) await stopProcess(r.server.proc, 'SIGKILL');
      removeDir(r.dir);
    }
  });

  it('loses, duplicates and strands nothing; every agent moves to the surviving replica', async () => {
    /** Executions per job id, by any agent. */
    const executions = new Map<number, number>();
    const outboxes: string[] = [];
    for (let i = 0; i < AGENTS; i++) {
      const dir = tempDir('tether-replica-outbox-');
      outboxes.push(dir);
      const r = new AgentRuntime({
        client: clients[i]!,
        log: logs.log.child({ agent: i }),
        version: 'test',
        collectMetrics: () => ({ cpuPercent: 1 }),
        heartbeatIntervalMs: 250,
        pollWaitSeconds: 5,
        minBackoffMs: 200,
        maxBackoffMs: 2000,
        concurrency: 2,
        outbox: new FileOutbox(dir),
        execute: async (cmd) => {
          executions.set(cmd.id, (executions.get(cmd.id) ?? 0) + 1);
          await sleep(Math.random() * 150);
          return { status: 'succeeded', outputs: { lease: cmd.leaseId } };
        },
      });
      runtimes.push(r);
      r.start();
    }

    /** idempotency key -> id, for every submission a replica acknowledged. */
    const acked = new Map<string, number>();
    const unanswered = new Set<string>();
    let stop = false;
    let seq = 0;
    const submitOne = async (key: string, first: number) => {
      for (const i of [first, 1 - first]) {
        try {
          const r = await admins[i]!.request<{ id: number }>('POST', '/v1/commands', {
            target: { cluster: 'replicas' }, type: 'manifest', spec: { manifests: `kind: ConfigMap\nmetadata: {name: c${key}}\n` }, idempotencyKey: key, maxAttempts: 20,
          });
          const prev = acked.get(key);
          if (prev !== undefined) assert.equal(r.body.id, prev, `key ${key} maps to two commands`);
          acked.set(key, r.body.id);
          unanswered.delete(key);
          return;
        } catch (err) {
          if (err instanceof HttpError && err.status < 500) throw err;
          unanswered.add(key); // resubmitted with its key on the other replica now, and once more at the end
        }
      }
    };
    const submitter = (async () => {
      while (!stop) {
        const n = ++seq;
        await submitOne(`k${n}`, n % 2);
        await sleep(10);
      }
    })();
    const succeeded = async () => Number((await db.query("SELECT count(*) AS n FROM commands WHERE state = 'succeeded'")).rows[0].n);

    const recoveries: number[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const victim = replicas[i % 2]!;
      const a0 = acked.size;
      const s0 = await succeeded();
      await eventually(async () => acked.size >= a0 + 5 && (await succeeded()) >= s0 + 3, 30_000, 'traffic before the kill');
      const moves0 = clients.map((c) => c.moves);
      victim.server!.proc.kill('SIGKILL');
      await new Promise((r) => victim.server!.proc.once('exit', r));
      const killedAt = Date.now();
      // Every agent is heard again (a heartbeat through the surviving replica), those on the victim having moved.
      await eventually(() => runtimes.every((r) => r.lastHeartbeatAt > killedAt), 30_000, 'every agent back on the surviving replica');
      recoveries.push(Math.max(...runtimes.map((r) => r.lastHeartbeatAt)) - killedAt);
      const survivor = replicas[1 - (i % 2)]!.url;
      for (const [n, c] of clients.entries()) assert.ok(c.current === survivor, `agent ${n} on ${c.current} after ${victim.url} was killed (moves ${moves0[n]} -> ${c.moves})`);
      await start(victim);
    }
    stop = true;
    await submitter;
    for (const key of [...unanswered]) await submitOne(key, 0);
    assert.equal(unanswered.size, 0);

    const final = await untilAllTerminal(
      async () =>
        (await db.query('SELECT id, state, attempts, max_attempts, lease_id, idempotency_key FROM commands ORDER BY id')).rows as {
          id: number; state: string; attempts: number; max_attempts: number; lease_id: string; idempotency_key: string;
        }[],
      (LEASE_SECONDS + 20) * 1000,
    );

    const keys = final.map((r) => r.idempotency_key);
    assert.equal(new Set(keys).size, keys.length, 'a key made two commands');
    assert.deepEqual(new Set(keys), new Set(acked.keys()), 'exactly the acknowledged submissions exist');
    let ranAgain = 0;
    for (const r of final) {
      assert.equal(r.state, 'succeeded', `job ${r.id} ended ${r.state}`);
      const ran = executions.get(Number(r.id)) ?? 0;
      assert.ok(ran >= 1 && ran <= Number(r.attempts), `job ${r.id}: ${ran} executions for ${r.attempts} attempts`);
      if (ran > 1) ranAgain++;
    }
    // Applied once, by the attempt holding the lease: the stored outputs are that attempt's.
    const outputs = (await db.query('SELECT id, lease_id, outputs FROM commands')).rows as { id: number; lease_id: string; outputs: string }[];
    for (const o of outputs) assert.equal(JSON.parse(o.outputs).lease, o.lease_id, `job ${o.id}: the applied result is not the lease holder's`);
    const fenced = logs.lines().filter((l) => l.msg === 'result refused by the control plane; dropping it').length;
    // A late report (another attempt's lease) is refused by either replica and changes nothing.
    for (const [n, r] of final.slice(0, 4).entries()) {
      await assert.rejects(clients[n % AGENTS]!.report(Number(r.id), { leaseId: `late-${r.lease_id}`, outcome: 'failed', error: { code: 'executor_error', message: 'late', retryable: false } }), (e: HttpError) => e.status === 409 && e.code === 'stale_lease');
    }
    const notSucceeded = (await db.query("SELECT count(*) AS n FROM commands WHERE state <> 'succeeded'")).rows[0].n;
    assert.equal(Number(notSucceeded), 0);
    for (const dir of outboxes) {
      // A result is acknowledged by its answer, which with result?next comes once the next poll's
      // hold ends (pollWaitSeconds): the outboxes empty within that.
      await eventually(async () => (await new FileOutbox(dir).list()).length === 0, 15_000, 'the outboxes emptied').catch(() => undefined);
      assert.deepEqual(await new FileOutbox(dir).list(), [], 'an outbox still holds a result');
      removeDir(dir);
    }
    recoveries.sort((x, y) => x - y);
    console.warn(
      `      ${ITERATIONS} kills: ${final.length} jobs, ${ranAgain} ran more than once, ${fenced} late results fenced (409), ` +
        `agents heard again ${recoveries[0]}..${recoveries.at(-1)} ms after a kill, moves ${clients.map((c) => c.moves).join('/')}`,
    );
  });
});
