/**
 * The Go load generator (bench/loadgen-go/) against a real control plane (`tether server` as the
 * bench starts it): a handful of simulated agents, each with its own certificate issued through the
 * bootstrap flow, driven through bench/lib/fleet.ts as the bench drives it. Checks what the bench
 * reads from it: heartbeats answered, polls held by the control plane, a command claimed and its
 * result applied (the command `succeeded` through the API) in one request with the next poll
 * (result?next=N: its answer carries `next`), and after a restart of the control
 * plane the agents back, over resumed TLS sessions.
 *
 * Go is the toolchain's (test/toolchain/install.sh builds etcd and the Kubernetes binaries with it):
 * without it the build fails and so does this test.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fleet, loadgenGoBinary } from '../../bench/lib/fleet.ts';
import { clusterOf, loadKeys, type Identity } from '../../bench/lib/identities.ts';
import { freePort } from '../../bench/lib/net.ts';
import { metric, startServer, type BenchServer } from '../../bench/lib/server.ts';
import { HttpClient } from '../../common/http-client.ts';
import { bootstrapResponseSchema } from '../../common/wire.ts';
import type { LoadgenStats } from '../../bench/loadgen.ts';

const AGENTS = 4;

async function until<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('bench: the Go load generator', function () {
  this.timeout(180_000);
  let dir: string;
  let s: BenchServer | undefined;
  let fleet: Fleet | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tether-loadgen-go-'));
    loadgenGoBinary(); // built (or found in the cache) before the clock of any test starts
  });
  after(async () => {
    await fleet?.stop();
    await s?.stop();
    await new Promise((r) => setTimeout(r, 50)); // the exited server's process handle closes on the next turn of the loop
    rmSync(dir, { recursive: true, force: true });
  });

  it('heartbeats, holds polls, claims a command and applies its result, and resumes TLS after a restart', async () => {
    const dataDir = join(dir, 'cp');
    const port = await freePort();
    s = await startServer({ dataDir, port, logFile: join(dir, 'server-1.log') });
    // Identities as bench/lib/identities.ts caches them, in a folder of this test's own.
    const ids = join(dir, 'identities');
    const keys = loadKeys(ids);
    const boot = new HttpClient({ baseUrl: s.url, ca: s.caPem, timeoutMs: 30_000 });
    try {
      for (let i = 0; i < AGENTS; i++) {
        const cid = clusterOf(i);
        await s.admin.request('POST', '/v1/clusters', { cid });
        const { token } = (await s.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body;
        const res = bootstrapResponseSchema.parse((await boot.request('POST', '/v1/bootstrap', { token, csr: keys[i]!.csr })).body);
        const id: Identity = { i, agentId: res.agentId, cid, key: i, certPem: res.certificate, notAfter: new X509Certificate(res.certificate).validToDate.getTime() };
        appendFileSync(join(ids, 'agents.jsonl'), `${JSON.stringify(id)}\n`);
      }
    } finally {
      boot.close();
    }

    fleet = await Fleet.start({ url: s.url, caPem: s.caPem, identityDir: ids, agents: AGENTS, perProcess: AGENTS, heartbeatMs: 1000, pollWaitSeconds: 25, rampMs: 500, mode: 'ack', localAddresses: 8, loadgen: 'go' });
    assert.equal(fleet.procs.length, 1);
    const c = await fleet.waitConnected(30_000, () => undefined);
    assert.equal(c.agents, AGENTS);
    assert.equal(c.connected, AGENTS);
    assert.equal(c.healthy, AGENTS);
    // Every agent's poll is held by the control plane, each agent on a connection of its own.
    const srv = s;
    await until('every poll held', 20_000, async () => ((await metric(srv, 'tether_long_polls_held')) === AGENTS ? true : undefined));
    assert.equal(await metric(srv, 'tether_connections', 'protocol="http2"'), AGENTS);

    await fleet.stats(true);
    await new Promise((r) => setTimeout(r, 3000));
    const st = await fleet.stats(true);
    assert.ok(st.hbOk >= AGENTS * 2, `heartbeats answered in 3 s at 1/s per agent: ${st.hbOk}`);
    assert.equal(st.hbErr, 0, JSON.stringify(st.errors));
    assert.equal(st.hbLatency.length, st.hbOk);
    assert.ok(st.hbLatency.every((x) => x > 0 && x < 10_000));
    assert.equal(st.tlsConnects, AGENTS, 'one TLS connection per agent');

    // A command for agent 2: claimed over its held poll, reported, and succeeded through the API.
    const submit = async () => (await srv.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: clusterOf(2) }, type: 'manifest', spec: { manifests: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n' } })).body.id;
    const id = await submit();
    await until('the command succeeded', 20_000, async () => ((await srv.admin.request<{ state: string }>('GET', `/v1/commands/${id}`)).body.state === 'succeeded' ? true : undefined));
    // Its result went with the next poll in one request (result?next=25), held now as agent 2's
    // poll: every agent's poll is held again and no poll was sent after the result.
    await until('every poll held after the result', 20_000, async () => ((await metric(srv, 'tether_long_polls_held')) === AGENTS ? true : undefined));
    // A second command is claimed through that request: its answer is the first result's, with `next`.
    const id2 = await submit();
    await until('the second command succeeded', 20_000, async () => ((await srv.admin.request<{ state: string }>('GET', `/v1/commands/${id2}`)).body.state === 'succeeded' ? true : undefined));
    // The control plane commits before it answers: the agent may count its 200 a moment after the API shows the state.
    const claims: LoadgenStats['claims'] = [];
    const done: LoadgenStats['resultDone'] = [];
    const after = await until('the result counted by the load generator', 10_000, async () => {
      const r = await fleet!.stats(false); // claims and results since the last report
      claims.push(...r.claims);
      done.push(...r.resultDone);
      return r.resultsOk >= 1 && claims.length >= 2 ? r : undefined;
    });
    assert.deepEqual(claims.map((x) => x.id), [id, id2]);
    // The second result is answered after its own next poll's hold (25 s): only the first is counted.
    assert.deepEqual(done.map((x) => x.id), [id]);
    assert.equal(after.resultsOk, 1);
    assert.equal(after.resultsErr, 0);
    assert.ok(claims[0]!.at <= done[0]!.at);
    assert.ok(after.pollOk >= 1, 'the answered poll was counted');
    assert.equal(after.resultRequests, 2, 'one request per result');
    assert.equal(after.resultNext, 1, "the first result's answer carried the second command");

    // A restart on the same port: every agent back (heartbeat and poll after the mark), over resumed sessions.
    await fleet.mark();
    await s.stop('SIGTERM');
    s = await startServer({ dataDir, port, logFile: join(dir, 'server-2.log') });
    const back = await until('every agent back', 60_000, async () => {
      const r: LoadgenStats = await fleet!.stats(false);
      return r.recoveredHb.length === AGENTS && r.recoveredPoll.length === AGENTS ? r : undefined;
    });
    assert.ok(back.recoveredHb.every((x) => x > 0));
    assert.ok(back.tlsConnects >= AGENTS * 2, `reconnected: ${back.tlsConnects} connections`);
    assert.ok(back.tlsResumed >= AGENTS, `TLS sessions resumed on reconnect: ${back.tlsResumed} of ${back.tlsConnects}`);
    const srv2 = s;
    await until('every poll held again', 20_000, async () => ((await metric(srv2, 'tether_long_polls_held')) === AGENTS ? true : undefined));
  });

  it('refuses a BENCH_AGENT_EXTRA_HEADERS that is not a count from 0 to 64, before doing anything', () => {
    for (const v of ['65', '-1', 'x', '1e3']) {
      const r = spawnSync(loadgenGoBinary(), [], { input: '', encoding: 'utf8', env: { ...process.env, BENCH_AGENT_EXTRA_HEADERS: v }, timeout: 30_000 });
      assert.equal(r.status, 1, `exit status for ${v}`);
      assert.match(r.stderr, /BENCH_AGENT_EXTRA_HEADERS must be 0-64/, `message for ${v}`);
    }
  });
});
