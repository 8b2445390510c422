/**
 * kill -9 of the control plane (`tether server`, a real process) while submissions, claims and
 * result reports are in flight, repeated. After every restart: each acknowledged submission is
 * still there, a key resubmitted after an unanswered submission makes no second command, each
 * acknowledged result is still applied, and in the end every command has reached exactly one
 * terminal state (nothing lost, duplicated, or left `running` past its lease).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import type { CommandView } from '../../common/wire.ts';
import { eventually, freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { faultIterations, readCommands, terminal, untilAllTerminal } from './support.ts';

const ITERATIONS = faultIterations(3);
const LEASE_SECONDS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`faults: kill -9 of the control plane during submissions, claims and reports (${ITERATIONS} iterations)`, function () {
  this.timeout(60_000 + ITERATIONS * 20_000);
  let dir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  let admin: HttpClient;
  let agent: AgentClient;
  const start = async () => {
    server = await spawnControlPlane(dir, port, ['--lease-seconds', String(LEASE_SECONDS), '--long-poll-seconds', '1']);
  };

  before(async () => {
    dir = tempDir('tether-cp-crash-');
    port = await freePort();
    await start();
    const caPem = readFileSync(join(dir, 'ca.crt'), 'utf8');
    admin = new HttpClient({ baseUrl: server!.url, ca: caPem, bearerToken: readFileSync(join(dir, 'admin-token'), 'utf8').trim(), timeoutMs: 5_000 });
    await admin.request('POST', '/v1/clusters', { cid: 'crash' });
    const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'crash', role: 'cluster-agent' })).body.token;
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: server!.url, caPem, token, keys });
    agent = new AgentClient(server!.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem });
  });
  after(async () => {
    admin?.close();
    agent?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    if (dir) removeDir(dir);
  });

  it('loses, duplicates and strands nothing', async () => {
    /** idempotency key -> id, for every submission the control plane acknowledged (200/202). */
    const acked = new Map<string, number>();
    /** Keys whose submission got no answer (the kill hit it): resubmitted after the restart. */
    const unanswered = new Set<string>();
    /** Results the control plane acknowledged as applied: id -> lease. */
    const applied = new Map<number, string>();
    const claims = { n: 0, lost: 0 };
    let stop = false;
    let drained = false;
    let seq = 0;

    const submitOne = async (key: string) => {
      try {
        const r = await admin.request<{ id: number; created: boolean }>('POST', '/v1/commands', {
          target: { cluster: 'crash' }, type: 'manifest', spec: { manifests: `kind: ConfigMap\nmetadata: {name: c${key}}\n` }, idempotencyKey: key, maxAttempts: 20,
        });
        const prev = acked.get(key);
        if (prev !== undefined) assert.equal(r.body.id, prev, `key ${key} maps to two commands`);
        acked.set(key, r.body.id);
        unanswered.delete(key);
      } catch (err) {
        if (err instanceof HttpError && err.status < 500) throw err;
        unanswered.add(key);
      }
    };
    /** What ended a loop early (an assertion or a 4xx): the test's failure. */
    let loopError: unknown;
    const submitter = (async () => {
      while (!stop) {
        await submitOne(`k${++seq}`);
        await sleep(5);
      }
    })().catch((err: unknown) => {
      loopError ??= err;
    });
    const worker = (async () => {
      while (!stop) {
        let cmd;
        try {
          cmd = (await agent.poll(1)).command;
        } catch {
          await sleep(50);
          continue;
        }
        if (!cmd) continue;
        claims.n++;
        // Report until the control plane answers: applied, duplicate (it had applied it before dying) or stale (requeued).
        while (!stop) {
          let status: string;
          try {
            status = (await agent.report(cmd.id, { leaseId: cmd.leaseId, outcome: 'succeeded', outputs: { lease: cmd.leaseId } })).status;
          } catch (err) {
            if (err instanceof HttpError && err.status === 409) {
              claims.lost++;
              break;
            }
            if (err instanceof HttpError && err.status < 500) throw err;
            await sleep(50);
            continue;
          }
          assert.ok(status === 'applied' || status === 'duplicate', status);
          applied.set(cmd.id, cmd.leaseId);
          break;
        }
      }
    })().catch((err: unknown) => {
      loopError ??= err;
    });

    // The loops end however the test ends: left running after a failure they would hammer the
    // next test's port, and the drain's poll on a closed client (the after hook) rejects without
    // I/O, so a loop around it would starve the event loop and hang the whole run.
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        const a0 = acked.size;
        const c0 = claims.n;
        // Kill in the middle of the traffic: once submissions and claims have moved on since the last restart.
        await eventually(() => {
          if (loopError) throw loopError;
          return acked.size >= a0 + 5 && claims.n >= c0 + 2;
        }, 20_000, 'traffic before the kill');
        server!.proc.kill('SIGKILL');
        await new Promise((r) => server!.proc.once('exit', r));
        await start();
        // Everything acknowledged before the kill is in the database, as acknowledged.
        const rows = new Map(readCommands(dir).map((r) => [r.id, r]));
        for (const [key, id] of acked) {
          assert.ok(rows.has(id), `acknowledged submission ${key} (job ${id}) lost`);
          assert.equal(rows.get(id)!.idempotency_key, key);
        }
        for (const [id, lease] of applied) {
          const r = rows.get(id)!;
          assert.ok(terminal(r.state) && r.lease_id === lease, `acknowledged result for job ${id} lost (state ${r.state})`);
        }
      }
      stop = true;
      await Promise.all([submitter, worker]);
      if (loopError) throw loopError;
      // Unanswered submissions are retried with their key: at most one command per key, ever.
      for (const key of [...unanswered]) await submitOne(key);
      assert.equal(unanswered.size, 0);

      // Drain: the agent finishes what is queued or requeued after lease expiry.
      let drainError: unknown;
      const drain = (async () => {
        while (!drained) {
          try {
            const p = await agent.poll(1);
            if (p.command) await agent.report(p.command.id, { leaseId: p.command.leaseId, outcome: 'succeeded', outputs: { lease: p.command.leaseId } });
          } catch (err) {
            drainError = err;
            await sleep(50);
          }
        }
      })();
      const final = await untilAllTerminal(() => readCommands(dir), (LEASE_SECONDS + 10) * 1000, () => `the drain's last error: ${String(drainError)}; server:\n${server!.output().slice(-3000)}`);
      drained = true;
      await drain;

      const keys = final.map((r) => r.idempotency_key);
      assert.equal(new Set(keys).size, keys.length, 'a key made two commands');
      assert.deepEqual(new Set(keys), new Set(acked.keys()), 'exactly the acknowledged submissions exist');
      for (const r of final) {
        assert.equal(r.state, 'succeeded', `job ${r.id} ended ${r.state}`);
        assert.ok(r.attempts >= 1 && r.attempts <= r.max_attempts);
      }
      // Outputs are in the single-job view (list views leave them out).
      const views = await Promise.all(final.map(async (r) => (await admin.request<CommandView>('GET', `/v1/commands/${r.id}`)).body));
      for (const v of views) assert.equal((v.outputs as { lease?: string } | null)?.lease !== undefined, true, `job ${v.id} has the outputs of the attempt that finished it`);
      console.warn(`      ${ITERATIONS} kills: ${final.length} jobs, ${claims.n} claims, ${claims.lost} late results refused after requeue, ${final.filter((r) => r.attempts > 1).length} jobs ran more than once`);
    } finally {
      stop = true;
      drained = true;
      await Promise.all([submitter, worker]);
    }
  });
});
