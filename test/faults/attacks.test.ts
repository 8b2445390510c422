/**
 * Attacks on identity and isolation: every attempt is refused with a clear error, the refusal is
 * logged by the control plane (401/403/429 at warn, with code, route and peer, never the token),
 * and the queue is left as it was.
 */
import assert from 'node:assert/strict';
import { ManualClock } from '../../common/clock.ts';
import { HttpClient, HttpError } from '../../common/http-client.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { createCsr, generateKeyPair } from '../../common/csr.ts';
import type { CommandView } from '../../common/wire.ts';
import { loadOrCreatePki, issueAgentCertificate } from '../../control-plane/pki/ca.ts';
import { removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { captureLogger, LEVEL, type CapturedLog } from './support.ts';

const MANIFEST = { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' };

async function refusal(p: Promise<unknown>): Promise<HttpError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof HttpError, `expected a refusal, got ${err === undefined ? 'success' : String(err)}`);
  return err;
}

/** Asserts the control plane logged this refusal at warn with code, route and peer; returns the line. */
function loggedRefusal(logs: CapturedLog, code: string, path: string | RegExp, level: number = LEVEL.warn) {
  const line = logs.lines().find((l) => l.msg === 'request refused' && l.code === code && (typeof path === 'string' ? l.path === path : path.test(String(l.path))));
  assert.ok(line, `no "request refused" log line with code ${code} on ${path}; refusals logged: ${JSON.stringify(logs.lines().filter((l) => l.msg === 'request refused').slice(-5))}`);
  assert.equal(line.level, level, `refusal ${code} logged at level ${String(line.level)}`);
  if (level >= LEVEL.warn) assert.equal(line.peer, '127.0.0.1', 'the peer address is logged');
  return line;
}

describe('faults: attacks on identity and isolation', function () {
  this.timeout(60_000);
  const clock = new ManualClock();
  let logs: CapturedLog;
  let t: TestControlPlane;
  let agentA: TestAgent;
  let agentB: TestAgent;
  let snapshot: CommandView[];
  const secrets: string[] = [];
  const commands = async () => (await t.admin.request<{ commands: CommandView[] }>('GET', '/v1/commands?limit=200')).body.commands;

  before(async () => {
    logs = captureLogger('debug');
    t = await startTestControlPlane({}, { clock, log: logs.log });
    secrets.push(t.adminToken);
    await t.createCluster('alpha');
    await t.createCluster('bravo');
    agentA = await t.agent('alpha', 'cluster-agent');
    agentB = await t.agent('bravo', 'cluster-agent');
  });
  after(async () => {
    agentA?.client.close();
    agentB?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  describe('bootstrap tokens', () => {
    const bootstrap = (token: string, extra: { aid?: string } = {}) => bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair(), ...extra });

    it('refuses a reused token (401 token_used), logged without the token', async () => {
      const token = await t.bootstrapToken('alpha', 'cluster-agent');
      secrets.push(token);
      await bootstrap(token);
      const err = await refusal(bootstrap(token));
      assert.equal(err.status, 401);
      assert.equal(err.code, 'token_used');
      loggedRefusal(logs, 'token_used', '/v1/bootstrap');
    });

    it('refuses an expired token (401 token_expired)', async () => {
      const token = await t.bootstrapToken('alpha', 'cluster-agent');
      secrets.push(token);
      const saved = clock.now();
      clock.advance(3601_000);
      // Certificates are issued at the control plane's clock: move it back for the tests after this one.
      const err = await refusal(bootstrap(token)).finally(() => clock.set(saved));
      assert.equal(err.code, 'token_expired');
      assert.equal(err.status, 401);
      loggedRefusal(logs, 'token_expired', '/v1/bootstrap');
    });

    it('refuses a token presented for another account (403 wrong_account), and it stays unspent', async () => {
      const token = await t.bootstrapToken('alpha', 'cluster-agent');
      secrets.push(token);
      const err = await refusal(bootstrap(token, { aid: 'zzzzz' }));
      assert.equal(err.status, 403);
      assert.equal(err.code, 'wrong_account');
      loggedRefusal(logs, 'wrong_account', '/v1/bootstrap');
      const ok = await bootstrap(token, { aid: t.aid });
      assert.equal(ok.cid, 'alpha');
    });

    it('rate-limits guessing: after N failures from one address even a valid token is refused (429)', async () => {
      // Its own control plane: the limiter is per address, and every test here comes from 127.0.0.1.
      const own = captureLogger('debug');
      const g = await startTestControlPlane({ bootstrapFailuresPerMinute: 5 }, { log: own.log });
      try {
        await g.createCluster('gamma');
        const valid = await g.bootstrapToken('gamma', 'cluster-agent');
        const guess = (i: number) => `tether_bt_${'abcdefghijk'}${i % 10}.${'A'.repeat(42)}${i % 10}`;
        for (let i = 0; i < 5; i++) {
          const err = await refusal(bootstrapAgent({ url: g.url, caPem: g.caPem, token: guess(i), keys: generateKeyPair() }));
          assert.equal(err.code, 'invalid_token');
        }
        const limited = await refusal(bootstrapAgent({ url: g.url, caPem: g.caPem, token: valid, keys: generateKeyPair() }));
        assert.equal(limited.status, 429);
        assert.equal(limited.code, 'rate_limited');
        loggedRefusal(own, 'invalid_token', '/v1/bootstrap');
        loggedRefusal(own, 'rate_limited', '/v1/bootstrap');
        assert.ok(!own.text().includes(valid) && !own.text().includes(guess(1)), 'no token in the log');
        assert.equal((await g.admin.request<{ agents: unknown[] }>('GET', '/v1/agents')).body.agents.length, 0, 'nobody got in');
      } finally {
        await g.close();
        removeDir(g.dataDir);
      }
    });
  });

  describe('client certificates', () => {
    const asCert = (certPem: string, keyPem: string) => new AgentClient(t.url, { certPem, keyPem, caPem: t.caPem });

    it('refuses a certificate from another CA, even one naming a real agent (401 untrusted_certificate)', async () => {
      const dir = tempDir('tether-evil-ca-');
      try {
        const evil = loadOrCreatePki(dir, ['localhost'], clock.now());
        const keys = generateKeyPair();
        const forged = await issueAgentCertificate(evil, createCsr(keys, 'x'), { agentId: agentA.identity.agentId, aid: t.aid, cid: 'alpha', role: 'cluster-agent', nid: null }, 86400_000, Date.now());
        const c = asCert(forged.certPem, keys.privateKeyPem);
        const err = await refusal(c.poll(0));
        c.close();
        assert.equal(err.status, 401);
        assert.equal(err.code, 'untrusted_certificate');
        loggedRefusal(logs, 'untrusted_certificate', '/v1/agent/poll');
      } finally {
        removeDir(dir);
      }
    });

    it('refuses a request without a client certificate on agent routes (401)', async () => {
      const c = new HttpClient({ baseUrl: t.url, ca: t.caPem });
      const err = await refusal(c.request('GET', '/v1/agent/poll?wait=0'));
      c.close();
      assert.equal(err.code, 'client_certificate_required');
      loggedRefusal(logs, 'client_certificate_required', '/v1/agent/poll');
    });

    it('refuses an expired certificate (401 certificate_expired)', async () => {
      const a = await t.agent('alpha', 'cluster-agent');
      const saved = clock.now();
      clock.advance(31 * 86400_000);
      try {
        const err = await refusal(a.client.heartbeat({ version: 'x', metrics: {}, running: [] } as never));
        assert.equal(err.status, 401);
        assert.equal(err.code, 'certificate_expired');
        loggedRefusal(logs, 'certificate_expired', '/v1/agent/heartbeat');
      } finally {
        clock.set(saved);
        a.client.close();
      }
    });

    it('refuses a revoked agent on its next request (403 certificate_revoked)', async () => {
      const a = await t.agent('alpha', 'cluster-agent');
      await a.client.poll(0);
      await t.admin.request('POST', `/v1/agents/${a.identity.agentId}/revoke`);
      const err = await refusal(a.client.poll(0));
      assert.equal(err.status, 403);
      assert.equal(err.code, 'certificate_revoked');
      loggedRefusal(logs, 'certificate_revoked', '/v1/agent/poll');
      const renew = await refusal(a.client.renew(createCsr(a.keys, 'x')));
      assert.equal(renew.code, 'certificate_revoked', 'a revoked agent cannot renew its way back');
      a.client.close();
    });

    it('keeps roles apart: a cluster agent on node-only routes is refused; a node agent never claims, reports on or logs to cluster commands', async () => {
      const vpn = await agentA.client.request('GET', '/v1/agent/vpn/config').then(() => undefined, (e: unknown) => e);
      if (vpn instanceof HttpError && vpn.code === 'route_not_found') {
        console.warn('      (no node-only /v1/agent/vpn routes in this tree: role scoping checked through claims only)');
      } else {
        assert.ok(vpn instanceof HttpError, 'a cluster agent may not read the VPN configuration');
        assert.ok(vpn.status === 401 || vpn.status === 403, `status ${vpn.status}`);
        assert.equal(vpn.code, 'wrong_role');
        loggedRefusal(logs, 'wrong_role', '/v1/agent/vpn/config');
      }
      const node = await t.agent('alpha', 'node', { nodeName: 'n1' });
      const sub = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: MANIFEST });
      for (let i = 0; i < 5; i++) {
        const p = await node.client.poll(0);
        if (!p.command) break;
        assert.notEqual(p.command.id, sub.body.id, 'a node agent claimed a cluster command');
        assert.ok(['preflight', 'install', 'vpn-sync'].includes(p.command.type), `a node got a ${p.command.type} command`);
        await node.client.report(p.command.id, { leaseId: p.command.leaseId, outcome: 'succeeded' });
      }
      const claimed = await agentA.client.poll(0);
      assert.equal(claimed.command?.id, sub.body.id);
      for (const attempt of [
        node.client.report(sub.body.id, { leaseId: claimed.command!.leaseId, outcome: 'failed', error: { code: 'x', message: 'x', retryable: false } }),
        node.client.logs(sub.body.id, claimed.command!.leaseId, [{ stream: 'stdout', text: 'injected' }]),
      ]) {
        const err = await refusal(attempt);
        assert.equal(err.status, 404);
        assert.equal(err.code, 'job_not_found');
      }
      loggedRefusal(logs, 'job_not_found', `/v1/agent/commands/${sub.body.id}/result`, LEVEL.debug);
      await agentA.client.report(sub.body.id, { leaseId: claimed.command!.leaseId, outcome: 'succeeded' });
      const v = (await t.admin.request<CommandView>('GET', `/v1/commands/${sub.body.id}`)).body;
      assert.equal(v.state, 'succeeded');
      assert.equal(v.claimedBy, agentA.identity.agentId);
      node.client.close();
    });

    it("keeps clusters apart: cluster A's agent cannot see, claim, report on, log to or read cluster B's commands", async () => {
      const sub = await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'bravo' }, type: 'manifest', spec: MANIFEST });
      const id = sub.body.id;
      assert.equal((await agentA.client.poll(0)).command, null, "A's poll does not see B's command");
      const claim = await agentB.client.poll(0);
      assert.equal(claim.command?.id, id);
      const lease = claim.command!.leaseId;
      const attempts: [string, Promise<unknown>][] = [
        ['result', agentA.client.report(id, { leaseId: lease, outcome: 'succeeded' })],
        ['logs', agentA.client.logs(id, lease, [{ stream: 'stdout', text: 'from A' }])],
      ];
      for (const [what, p] of attempts) {
        const err = await refusal(p);
        assert.equal(err.status, 404, what);
        assert.equal(err.code, 'job_not_found', what);
      }
      // A heartbeat naming B's command extends nothing; A has no way to read logs (admin routes need a token).
      await agentA.client.heartbeat({ version: 'x', metrics: {}, running: [id] } as never);
      // Over its own HTTP/2 connection the admin API is not served at all; over HTTP/1.1 its
      // certificate is no substitute for an API token.
      const overH2 = await refusal(agentA.client.request('GET', `/v1/commands/${id}/logs`));
      assert.equal(overH2.status, 404);
      assert.equal(overH2.code, 'route_not_found');
      const h1 = new HttpClient({ baseUrl: t.url, ca: t.caPem, cert: agentA.identity.certificate, key: agentA.keys.privateKeyPem });
      try {
        const read = await refusal(h1.request('GET', `/v1/commands/${id}/logs`));
        assert.equal(read.status, 401);
      } finally {
        h1.close();
      }
      loggedRefusal(logs, 'missing_token', `/v1/commands/${id}/logs`);
      const v = (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
      assert.equal(v.state, 'running');
      assert.equal(v.claimedBy, agentB.identity.agentId);
      await agentB.client.report(id, { leaseId: lease, outcome: 'succeeded' });
      assert.equal((await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body.lines.filter((l) => l.text === 'from A').length, 0);
    });
  });

  describe('admin tokens', () => {
    const as = (token?: string, header?: string) => {
      const c = new HttpClient({ baseUrl: t.url, ca: t.caPem, ...(token ? { bearerToken: token } : {}) });
      return { c, get: (path: string) => (header ? rawGet(path, header) : c.request('GET', path)) };
    };
    const rawGet = (path: string, authorization: string) => {
      const c = new HttpClient({ baseUrl: t.url, ca: t.caPem });
      // HttpClient only sends "Bearer <token>"; a malformed header needs its own request.
      return import('node:https').then(
        (https) =>
          new Promise<never>((_resolve, reject) => {
            const req = https.request(new URL(path, t.url), { ca: t.caPem, headers: { authorization } }, (res) => {
              let text = '';
              res.on('data', (d) => (text += d));
              res.on('end', () => {
                c.close();
                const e = (JSON.parse(text) as { error: { code: string; message: string } }).error;
                reject(new HttpError(res.statusCode ?? 0, e.code, e.message));
              });
            });
            req.on('error', reject);
            req.end();
          }),
      );
    };

    before(async () => {
      await t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: MANIFEST, idempotencyKey: 'keep-me' });
      snapshot = await commands();
    });

    it('refuses a missing, malformed or wrong token (401) and logs each', async () => {
      for (const [header, code] of [
        [undefined, 'missing_token'],
        ['Basic dXNlcjpwYXNz', 'invalid_token'],
        ['Bearer a b', 'invalid_token'],
        ['Bearer tether_pat_aaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'invalid_token'],
        [`Bearer ${t.adminToken}x`, 'invalid_token'],
      ] as const) {
        const before = logs.lines().length;
        const { c, get } = as(undefined, header);
        const err = await refusal(get('/v1/commands'));
        c.close();
        assert.equal(err.status, 401, String(header));
        assert.equal(err.code, code, String(header));
        const fresh = logs.lines().slice(before);
        assert.ok(fresh.some((l) => l.msg === 'request refused' && l.code === code && l.level === LEVEL.warn && l.path === '/v1/commands'), `refusal for ${String(header)} logged`);
      }
    });

    it('refuses an expired and a revoked token (401)', async () => {
      const short = (await t.admin.request<{ token: string; keyId: string }>('POST', '/v1/api-tokens', { name: 'short', ttlSeconds: 60 })).body;
      const revoked = (await t.admin.request<{ token: string; keyId: string }>('POST', '/v1/api-tokens', { name: 'doomed' })).body;
      secrets.push(short.token, revoked.token);
      const ok = as(short.token);
      assert.equal((await ok.c.request<{ aid: string }>('GET', '/v1/whoami')).body.aid, t.aid);
      const saved = clock.now();
      clock.advance(61_000);
      const expired = await refusal(ok.get('/v1/commands')).finally(() => clock.set(saved));
      ok.c.close();
      assert.equal(expired.code, 'token_expired');
      loggedRefusal(logs, 'token_expired', '/v1/commands');

      await t.admin.request('DELETE', `/v1/api-tokens/${revoked.keyId}`);
      const r = as(revoked.token);
      const err = await refusal(r.get('/v1/clusters'));
      r.c.close();
      assert.equal(err.code, 'token_revoked');
      loggedRefusal(logs, 'token_revoked', '/v1/clusters');
    });

    it("never lets another account read or write this account's jobs, clusters or agents", async () => {
      const other = await t.cp.accounts.createAccount('intruder');
      secrets.push(other.token);
      const { c } = as(other.token);
      try {
        const mine = snapshot[0]!;
        assert.deepEqual((await c.request<{ commands: unknown[] }>('GET', '/v1/commands')).body.commands, []);
        assert.deepEqual((await c.request<{ clusters: unknown[] }>('GET', '/v1/clusters')).body.clusters, []);
        assert.deepEqual((await c.request<{ agents: unknown[] }>('GET', '/v1/agents')).body.agents, []);
        const tries: [string, Promise<unknown>, number, string][] = [
          ['read', c.request('GET', `/v1/commands/${mine.id}`), 404, 'job_not_found'],
          ['logs', c.request('GET', `/v1/commands/${mine.id}/logs`), 404, 'job_not_found'],
          ['cancel', c.request('POST', `/v1/commands/${mine.id}/cancel`), 404, 'job_not_found'],
          ['submit', c.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: MANIFEST }), 404, 'cluster_not_found'],
          ['idempotency key', c.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: MANIFEST, idempotencyKey: 'keep-me' }), 404, 'cluster_not_found'],
          ['token for our cluster', c.request('POST', '/v1/tokens', { cluster: 'alpha', role: 'cluster-agent' }), 404, 'cluster_not_found'],
          ['revoke our agent', c.request('POST', `/v1/agents/${agentA.identity.agentId}/revoke`), 404, 'agent_not_found'],
          ['read our agent', c.request('GET', `/v1/agents/${agentA.identity.agentId}`), 404, 'agent_not_found'],
        ];
        // Every request is in flight at once: each gets its handler now, not when the loop reaches it.
        const refusals = tries.map(([what, p, status, code]) => [what, refusal(p), status, code] as const);
        for (const [what, refused, status, code] of refusals) {
          const err = await refused;
          assert.equal(err.status, status, what);
          assert.equal(err.code, code, what);
        }
        loggedRefusal(logs, 'job_not_found', `/v1/commands/${mine.id}/cancel`, LEVEL.debug);
        loggedRefusal(logs, 'cluster_not_found', '/v1/commands', LEVEL.debug);
      } finally {
        c.close();
      }
    });

    it('leaves the queue and the agents as they were', async () => {
      assert.deepEqual(await commands(), snapshot);
      const agents = (await t.admin.request<{ agents: { id: string; revoked: boolean }[] }>('GET', '/v1/agents')).body.agents;
      assert.equal(agents.find((a) => a.id === agentA.identity.agentId)?.revoked, false);
    });

    it('never writes a token or secret into its log', () => {
      const text = logs.text();
      for (const s of secrets) {
        assert.ok(!text.includes(s), 'a token in the control plane log');
        assert.ok(!text.includes(s.split('.')[1]!), 'a token secret in the control plane log');
      }
    });
  });
});

