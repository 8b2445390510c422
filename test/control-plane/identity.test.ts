/**
 * Identity: bootstrap tokens, certificates from the control plane's CA over real TLS on loopback,
 * revocation and renewal.
 */
import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { ManualClock } from '../../common/clock.ts';
import { generateKeyPair, createCsr } from '../../common/csr.ts';
import { bootstrapAgent, AgentClient } from '../../common/agent/agent-client.ts';
import { HttpError } from '../../common/http-client.ts';
import { createCa, issueAgentCertificate } from '../../control-plane/pki/ca.ts';
import { parseIdentityUri } from '../../common/identity.ts';
import { startTestControlPlane, removeDir, type TestControlPlane } from '../support/control-plane.ts';
import { databaseFor, databaseText, onPostgres } from '../support/postgres.ts';

async function refused(p: Promise<unknown>, status: number, code?: string): Promise<HttpError> {
  const err = await p.then(
    () => assert.fail(`expected a ${status} refusal`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HttpError, `expected an HttpError, got ${String(err)}`);
  assert.equal(err.status, status, `${err.code}: ${err.message}`);
  if (code) assert.equal(err.code, code);
  return err;
}

describe('identity: bootstrap tokens and certificates', () => {
  let t: TestControlPlane;
  const clock = new ManualClock();

  before(async () => {
    t = await startTestControlPlane({}, { clock });
    await t.createCluster('alpha');
    await t.createCluster('beta');
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  it('creates its CA, server certificate and admin token with private files 0600', () => {
    for (const f of ['ca.key', 'server.key', 'admin-token']) {
      assert.equal(statSync(join(t.dataDir, f)).mode & 0o077, 0, `${f} must not be readable by others`);
    }
    const server = new X509Certificate(readFileSync(join(t.dataDir, 'server.crt')));
    assert.match(server.subjectAltName ?? '', /DNS:localhost/);
    assert.match(server.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.ok(server.verify(new X509Certificate(t.caPem).publicKey), 'server certificate is signed by the CA');
  });

  it('trades a bootstrap token for a certificate carrying the identity; the key never travels', async () => {
    const token = await t.bootstrapToken('alpha', 'node', true);
    const keys = generateKeyPair();
    const res = await bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys, aid: t.aid, controlPlane: true, nodeName: 'node-a1' });
    assert.equal(res.role, 'node');
    assert.equal(res.cid, 'alpha');
    assert.equal(res.nid, 'node-a1');
    assert.equal(res.controlPlane, true);
    const cert = new X509Certificate(res.certificate);
    assert.ok(cert.verify(new X509Certificate(t.caPem).publicKey));
    assert.equal(cert.publicKey.export({ type: 'spki', format: 'pem' }), keys.publicKeyPem, 'certificate is for the agent-generated key');
    const uri = /URI:(\S+)/.exec(cert.subjectAltName ?? '')?.[1]?.replace(/,$/, '');
    assert.deepEqual(parseIdentityUri(uri!, res.agentId), { agentId: res.agentId, aid: t.aid, cid: 'alpha', role: 'node', nid: 'node-a1' });
    const client = new AgentClient(t.url, { certPem: res.certificate, keyPem: keys.privateKeyPem, caPem: t.caPem });
    const who = await client.request<{ agentId: string; cid: string }>('GET', '/v1/agent/whoami');
    assert.equal(who.agentId, res.agentId);
    client.close();
    // The private key is nowhere in the control plane's files.
    const needle = keys.privateKeyPem.split('\n')[5]!;
    if (onPostgres) assert.ok(!(await databaseText(resolve(t.dataDir))).includes(needle), 'the database must not contain the agent key');
    else
      for (const f of ['tether.db', 'tether.db-wal']) {
        assert.ok(!readFileSync(join(t.dataDir, f)).includes(needle), `${f} must not contain the agent key`);
      }
  });

  it('refuses a second use of a token', async () => {
    const token = await t.bootstrapToken('alpha', 'cluster-agent');
    await bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair() });
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair() }), 401, 'token_used');
  });

  it('refuses an expired token', async () => {
    const token = await t.bootstrapToken('alpha', 'cluster-agent');
    clock.advance(3601_000);
    try {
      await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair() }), 401, 'token_expired');
    } finally {
      clock.advance(-3601_000);
    }
  });

  it('refuses a token presented for another account, and the token stays unused', async () => {
    const token = await t.bootstrapToken('alpha', 'node');
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair(), aid: 'zzzzz' }), 403, 'wrong_account');
    const ok = await bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair(), aid: t.aid });
    assert.equal(ok.aid, t.aid);
  });

  it('refuses a token for the wrong node role, and an unknown or malformed token', async () => {
    const token = await t.bootstrapToken('alpha', 'node', false);
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair(), controlPlane: true }), 403, 'wrong_role');
    const forged = token.replace(/\.(.)/, (_m, c: string) => `.${c === 'A' ? 'B' : 'A'}`);
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token: forged, keys: generateKeyPair() }), 401, 'invalid_token');
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token: 'garbage', keys: generateKeyPair() }), 401, 'invalid_token');
  });

  it('refuses a bad CSR with 400 and leaves the token usable', async () => {
    const token = await t.bootstrapToken('alpha', 'cluster-agent');
    await refused(t.admin.request('POST', '/v1/bootstrap', { token, csr: 'not a csr' }), 400, 'invalid_csr');
    const ok = await bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair() });
    assert.equal(ok.role, 'cluster-agent');
  });

  it('refuses agent routes without a client certificate', async () => {
    await refused(t.admin.request('GET', '/v1/agent/whoami'), 401, 'client_certificate_required');
  });

  it('refuses a certificate from another CA', async () => {
    const otherCa = createCa();
    const keys = generateKeyPair();
    const forged = await issueAgentCertificate({ caCertPem: otherCa.certPem, caKeyPem: otherCa.keyPem }, createCsr(keys, 'x'), { agentId: 'ca-aaaaaaaaaa', aid: t.aid, cid: 'alpha', role: 'cluster-agent', nid: null }, 86400_000);
    const client = new AgentClient(t.url, { certPem: forged.certPem, keyPem: keys.privateKeyPem, caPem: t.caPem });
    await refused(client.request('GET', '/v1/agent/whoami'), 401, 'untrusted_certificate');
    client.close();
  });

  it('refuses a revoked certificate on its next request, on the same connection', async () => {
    const a = await t.agent('alpha', 'cluster-agent');
    await a.client.request('GET', '/v1/agent/whoami');
    await t.admin.request('POST', `/v1/agents/${a.identity.agentId}/revoke`);
    await refused(a.client.request('GET', '/v1/agent/whoami'), 403, 'certificate_revoked');
    await refused(a.client.heartbeat({ version: 't', metrics: {}, running: [] }), 403, 'certificate_revoked');
    const view = (await t.admin.request<{ revoked: boolean }>('GET', `/v1/agents/${a.identity.agentId}`)).body;
    assert.equal(view.revoked, true);
    a.client.close();
  });

  it('after a restart (the certificate cache filled in one query at the first request): valid certificates pass, revoked ones are refused, revoked before or after the fill', async () => {
    const t2 = await startTestControlPlane();
    try {
      await t2.createCluster('gamma');
      const [ok, before, after] = [await t2.agent('gamma', 'cluster-agent'), await t2.agent('gamma', 'cluster-agent'), await t2.agent('gamma', 'cluster-agent')];
      await t2.admin.request('POST', `/v1/agents/${before.identity.agentId}/revoke`);
      const port = t2.cp.port;
      await t2.cp.close();
      const { startControlPlane } = await import('../../control-plane/app.ts');
      const { silentLogger } = await import('../../common/logger.ts');
      // The same database (on PostgreSQL one per data folder: test/support/postgres.ts).
      const database = onPostgres ? { databaseUrl: await databaseFor(resolve(t2.dataDir)) } : {};
      t2.cp = await startControlPlane({ dataDir: t2.dataDir, host: '127.0.0.1', port, ...database }, { log: silentLogger(), driftScheduler: false });
      await ok.client.request('GET', '/v1/agent/whoami'); // the first request: the cache is filled
      await refused(before.client.request('GET', '/v1/agent/whoami'), 403, 'certificate_revoked');
      await after.client.request('GET', '/v1/agent/whoami');
      await t2.admin.request('POST', `/v1/agents/${after.identity.agentId}/revoke`);
      await refused(after.client.request('GET', '/v1/agent/whoami'), 403, 'certificate_revoked');
      // Issued after the fill: looked up on its own.
      const late = await t2.agent('gamma', 'cluster-agent');
      await late.client.request('GET', '/v1/agent/whoami');
      await ok.client.request('GET', '/v1/agent/whoami');
      for (const a of [ok, before, after, late]) a.client.close();
    } finally {
      await t2.close();
      removeDir(t2.dataDir);
    }
  });

  it('refuses an expired certificate', async () => {
    const a = await t.agent('alpha', 'cluster-agent');
    clock.advance(31 * 86400_000);
    try {
      await refused(a.client.request('GET', '/v1/agent/whoami'), 401, 'certificate_expired');
    } finally {
      clock.advance(-31 * 86400_000);
      a.client.close();
    }
  });

  it('renews a certificate over mTLS with a new CSR; the new one works', async () => {
    const keys = generateKeyPair();
    // Renewal opens once at most half of the certificate's life is left (30-day certificates): a
    // fresh one is refused, one issued 16 days ago is renewed.
    const fresh = await t.agent('beta', 'cluster-agent');
    await refused(fresh.client.renew(createCsr(keys, 'renew')), 429, 'renewal_too_early');
    fresh.client.close();
    clock.advance(-16 * 86400_000);
    const a = await t.agent('beta', 'cluster-agent').finally(() => clock.advance(16 * 86400_000));
    const renewed = await a.client.renew(createCsr(keys, 'renew'));
    const client = new AgentClient(t.url, { certPem: renewed.certificate, keyPem: keys.privateKeyPem, caPem: t.caPem });
    const who = await client.request<{ agentId: string }>('GET', '/v1/agent/whoami');
    assert.equal(who.agentId, a.identity.agentId);
    client.close();
    a.client.close();
  });

  it('refuses a node name already registered in the cluster', async () => {
    await t.agent('beta', 'node', { nodeName: 'dup' });
    const token = await t.bootstrapToken('beta', 'node');
    await refused(bootstrapAgent({ url: t.url, caPem: t.caPem, token, keys: generateKeyPair(), nodeName: 'dup' }), 409, 'node_exists');
  });

  it('rate-limits repeated failed bootstrap attempts from one address', async () => {
    let limited: HttpError | undefined;
    for (let i = 0; i < 40 && !limited; i++) {
      try {
        await t.admin.request('POST', '/v1/bootstrap', { token: `tether_bt_${'a'.repeat(12)}.${'b'.repeat(43)}`, csr: 'x' });
      } catch (err) {
        if (err instanceof HttpError && err.status === 429) limited = err;
      }
    }
    assert.ok(limited, 'guessing tokens is rate-limited');
    assert.equal(limited.code, 'rate_limited');
  });
});
