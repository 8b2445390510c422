/**
 * The control plane's transport on a real TLS port: agents get HTTP/2 (one connection for the
 * held poll, heartbeats and results), everyone else HTTP/1.1; held polls end at once on
 * shutdown; TLS sessions resume across a restart (keys kept 0600 in the data folder) without
 * weakening the per-request certificate checks.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane } from '../../control-plane/app.ts';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { HttpError } from '../../common/http-client.ts';
import { silentLogger } from '../../common/logger.ts';
import { eventually, removeDir, startTestControlPlane, type TestControlPlane } from '../support/control-plane.ts';

const hb = { version: 't', metrics: {}, running: [] };

function alpn(url: string, caPem: string, protocols: string[]): Promise<string | false> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: caPem, ALPNProtocols: protocols }, () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.on('error', reject);
  });
}

describe('control plane transport (HTTP/1.1 and HTTP/2 on one TLS port)', function () {
  this.timeout(30_000);
  let t: TestControlPlane;

  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('tr1');
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  it('speaks HTTP/2 only to clients that cannot speak HTTP/1.1', async () => {
    assert.equal(await alpn(t.url, t.caPem, ['h2']), 'h2');
    assert.equal(await alpn(t.url, t.caPem, ['h2', 'http/1.1']), 'http/1.1'); // curl, browsers
    assert.equal(await alpn(t.url, t.caPem, ['http/1.1']), 'http/1.1');
    // No ALPN at all (Node's https, the CLI): HTTP/1.1, the admin API answers.
    assert.equal((await t.admin.request<{ aid: string }>('GET', '/v1/whoami')).body.aid, t.aid);
  });

  it("carries an agent's held poll and its heartbeats on one connection", async () => {
    const before = t.cp.connections();
    const a = await t.agent('tr1', 'cluster-agent');
    try {
      const poll = a.client.poll(20);
      await eventually(() => t.cp.dispatcher.held === 1, 5_000, 'the poll to be held');
      for (let i = 0; i < 3; i++) assert.deepEqual((await a.client.heartbeat(hb)).cancel, []);
      const now = t.cp.connections();
      assert.equal(now.http2 - before.http2, 1, JSON.stringify({ before, now }));
      assert.equal(now.tls - before.tls, 1, JSON.stringify({ before, now }));
      // The held poll is still answered on that connection.
      const { id } = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'tr1' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body;
      assert.equal((await poll).command?.id, id);
    } finally {
      a.client.close();
    }
  });

  it('refuses the admin API over HTTP/2 with a JSON 404', async () => {
    const a = await t.agent('tr1', 'cluster-agent');
    try {
      const err = await a.client.request('GET', '/v1/commands').then(() => assert.fail('answered'), (e: unknown) => e);
      assert.ok(err instanceof HttpError);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'route_not_found');
      assert.match(err.message, /use HTTP\/1\.1/);
    } finally {
      a.client.close();
    }
  });
});

describe('control plane transport across a restart', function () {
  this.timeout(30_000);

  it('answers held polls at once on shutdown, then resumes TLS sessions and still checks each certificate', async () => {
    const t = await startTestControlPlane();
    const { dataDir } = t;
    let client: AgentClient | undefined;
    try {
      await t.createCluster('tr2');
      const a = await t.agent('tr2', 'cluster-agent');
      client = a.client;
      assert.equal((await client.request<{ agentId: string }>('GET', '/v1/agent/whoami')).agentId, a.identity.agentId);
      assert.equal(client.resumedTls, false);
      assert.equal(statSync(join(dataDir, 'tls-ticket-keys')).mode & 0o777, 0o600);

      let settled = false;
      // Answered empty or ended by the shutdown: either is an answer at once (a rejection is caught here, where it happens).
      const poll = client.poll(25).catch(() => ({ command: null, cancel: [] })).finally(() => (settled = true));
      await eventually(() => t.cp.dispatcher.held === 1, 5_000, 'the poll to be held');
      await t.cp.close();
      // Answered by the shutdown itself, not after its 25 s wait.
      await eventually(() => settled, 2_000, 'the held poll to be answered');
      assert.deepEqual(await poll, { command: null, cancel: [] });

      t.cp = await startControlPlane({ ...t.cp.config, port: t.cp.port, dataDir }, { log: silentLogger() });
      assert.equal((await client.request<{ agentId: string }>('GET', '/v1/agent/whoami')).agentId, a.identity.agentId);
      assert.equal(client.resumedTls, true, 'the reconnect resumed its TLS session');

      // Resumption carries the certificate, and the certificate is still checked on every request.
      await t.admin.request('POST', `/v1/agents/${a.identity.agentId}/revoke`).catch(async () => {
        // the admin client's connection died with the first process: a new request reconnects
        await t.admin.request('POST', `/v1/agents/${a.identity.agentId}/revoke`);
      });
      const err = await client.heartbeat(hb).then(() => assert.fail('answered'), (e: unknown) => e);
      assert.ok(err instanceof HttpError);
      assert.equal(err.status, 403);
      assert.equal(err.code, 'certificate_revoked');
    } finally {
      client?.close();
      await t.close();
      removeDir(dataDir);
    }
  });
});
