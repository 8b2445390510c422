/**
 * The control plane as a real process: `tether server` restarted (gracefully and with kill -9)
 * loses no queued or running command, and the `tether` CLI drives it end to end.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { onPostgres } from '../support/postgres.ts';

describe('control plane process: restart and CLI', function () {
  this.timeout(60_000);
  let dataDir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof spawnControlPlane>>;
  let env: NodeJS.ProcessEnv;
  let admin: HttpClient;
  let caPem: string;

  before(async () => {
    dataDir = tempDir();
    port = await freePort();
    server = await spawnControlPlane(dataDir, port);
    caPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    env = { TETHER_URL: server.url, TETHER_CA_FILE: join(dataDir, 'ca.crt'), TETHER_API_KEY: token };
    admin = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: token });
  });
  after(async () => {
    admin?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    removeDir(dataDir);
  });

  it('keeps its data folder private', () => {
    assert.equal(statSync(dataDir).mode & 0o077, 0);
    // On PostgreSQL (TETHER_TEST_DATABASE=postgres) the folder holds no database file.
    for (const f of [...(onPostgres ? [] : ['tether.db']), 'ca.key', 'server.key', 'admin-token']) assert.equal(statSync(join(dataDir, f)).mode & 0o077, 0, f);
  });

  it('drives the queue from the CLI: clusters, tokens, submit, jobs, follow, cancel, agents', async () => {
    const created = await runCli(['clusters', 'create', 'clitest'], env);
    assert.equal(created.code, 0, created.stderr);
    const list = JSON.parse((await runCli(['clusters', 'list', '--json'], env)).stdout) as { cid: string; aid: string; domain: string }[];
    const c = list.find((x) => x.cid === 'clitest')!;
    assert.match(c.aid, /^[a-z0-9]{5}$/);
    assert.equal(c.domain, `clitest.${c.aid}.tether.local`);

    const tok = await runCli(['tokens', 'create', '--cluster', 'clitest', '--role', 'cluster-agent', '--ttl', '15m'], env);
    assert.equal(tok.code, 0, tok.stderr);
    assert.match(tok.stdout, /^tether_bt_[a-z0-9]{12}\.[A-Za-z0-9_-]{43}\n$/, 'prints only the token');
    const keys = generateKeyPair();
    const identity = await bootstrapAgent({ url: server.url, caPem, token: tok.stdout.trim(), keys });
    const agent = new AgentClient(server.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem });

    const file = join(dataDir, '..', `cmd-${port}.yaml`);
    writeFileSync(file, 'target: {cluster: clitest}\ntype: manifest\nspec:\n  manifests: |\n    kind: ConfigMap\n');
    const sub = await runCli(['submit', '-f', file], env);
    assert.equal(sub.code, 0, sub.stderr);
    assert.match(sub.stdout, /^\d+\n$/, 'prints only the job id');
    const id = Number(sub.stdout.trim());
    const shown = JSON.parse((await runCli(['jobs', 'show', String(id), '--json'], env)).stdout) as CommandView;
    assert.equal(shown.state, 'queued');
    assert.equal(shown.type, 'manifest');

    // follow: streams the log and exits 0 when the job succeeds
    const claim = (await agent.poll(0)).command!;
    const following = runCli(['follow', String(id)], env);
    await new Promise((r) => setTimeout(r, 500));
    await agent.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'applied configmap' }]);
    await agent.report(id, { leaseId: claim.leaseId, outcome: 'succeeded' });
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /applied configmap/);

    // a failed job: follow exits 1
    const sub2 = await runCli(['submit', '-f', '-'], env, JSON.stringify({ target: { cluster: 'clitest' }, type: 'manifest', spec: { manifests: 'kind: X' } }));
    const id2 = Number(sub2.stdout.trim());
    const claim2 = (await agent.poll(0)).command!;
    await agent.report(id2, { leaseId: claim2.leaseId, outcome: 'failed', error: { code: 'apply_failed', message: 'no such kind X', retryable: false } });
    const followed2 = await runCli(['follow', String(id2)], env);
    assert.equal(followed2.code, 1);
    assert.match(followed2.stderr, /failed: apply_failed: no such kind X/);

    // cancel a queued job
    const sub3 = await runCli(['submit', '-f', file], env);
    const cancelled = await runCli(['cancel', sub3.stdout.trim()], env);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, /cancelled/);
    const jobs = JSON.parse((await runCli(['jobs', 'list', '--json'], env)).stdout) as CommandView[];
    assert.deepEqual(jobs.slice(0, 3).map((j) => j.state), ['cancelled', 'failed', 'succeeded']);

    await agent.heartbeat({ version: '9.9.9', metrics: {}, running: [] });
    const agents = JSON.parse((await runCli(['agents', 'list', '--json'], env)).stdout) as AgentView[];
    const me = agents.find((a) => a.id === identity.agentId)!;
    assert.equal(me.status, 'healthy');
    assert.equal(me.version, '9.9.9');
    const revoked = await runCli(['agents', 'revoke', identity.agentId], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    await assert.rejects(agent.heartbeat({ version: '9.9.9', metrics: {}, running: [] }), /revoked/);
    agent.close();
  });

  it('exits 2 on bad usage and 1 on a refused request, with a message on stderr', async () => {
    const bad = await runCli(['jobs', 'show', 'not-a-number'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not a job id/);
    const unknown = await runCli(['frobnicate'], env);
    assert.equal(unknown.code, 2);
    const missing = await runCli(['tokens', 'create', '--role', 'node'], env);
    assert.equal(missing.code, 2);
    const refused = await runCli(['jobs', 'show', '424242'], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /job_not_found/);
    const noKey = await runCli(['clusters', 'list'], { ...env, TETHER_API_KEY: 'tether_pat_wrong' });
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /invalid_token/);
    const badFile = await runCli(['submit', '-f', '/nonexistent.yaml'], env);
    assert.equal(badFile.code, 2);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`loses no queued or running command across a restart (${signal})`, async () => {
      await admin.request('POST', '/v1/clusters', { cid: `rs${signal.toLowerCase().slice(3)}` });
      const cid = `rs${signal.toLowerCase().slice(3)}`;
      const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const identity = await bootstrapAgent({ url: server.url, caPem, token, keys });
      let agent = new AgentClient(server.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem });
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push((await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: cid }, type: 'manifest', spec: { manifests: `n: ${i}` } })).body.id);
      }
      const running = (await agent.poll(0)).command!;
      assert.equal(running.id, ids[0]);

      await stopProcess(server.proc, signal);
      agent.close();
      server = await spawnControlPlane(dataDir, port);
      admin.close();
      admin = new HttpClient({ baseUrl: server.url, ca: caPem, bearerToken: env.TETHER_API_KEY });
      agent = new AgentClient(server.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem });

      const states = await Promise.all(ids.map(async (id) => (await admin.request<CommandView>('GET', `/v1/commands/${id}`)).body.state));
      assert.deepEqual(states, ['running', 'queued', 'queued', 'queued', 'queued']);
      // The running attempt's lease survived: its result is accepted after the restart.
      assert.equal((await agent.report(running.id, { leaseId: running.leaseId, outcome: 'succeeded' })).status, 'applied');
      for (const id of ids.slice(1)) {
        const c = (await agent.poll(0)).command!;
        assert.equal(c.id, id, 'queued commands are delivered in order after the restart');
        await agent.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded' });
      }
      agent.close();
    });
  }
});
