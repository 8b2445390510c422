/**
 * An agent whose HTTP/2 connection is gone before its request fails (real server, SQLite, group
 * commit, mutual TLS): the failure must end that request, not the control plane. Once a session's
 * socket is detached, every property of `stream.session.socket` (a proxy) throws
 * ERR_HTTP2_SOCKET_UNBOUND; the agent API read the peer's address from it in its error path, after
 * the request had waited (here: for a WAL sync that then fails), and the throw escaped as an
 * unhandled rejection: `tether server` exits on one ("the process state is unknown"). Found by the
 * restart storm at 10,000 agents, where the draining server died this way.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { walSyncHoldForTests } from '../../control-plane/db/durability.ts';
import { eventually, removeDir, startTestControlPlane, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

describe('agent API: a request failing after its connection is gone', function () {
  this.timeout(30_000);
  let t: TestControlPlane | undefined;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);

  before(async function () {
    sqliteOnly(this, 'the WAL sync it holds and fails is SQLite\'s group commit');
    t = await startTestControlPlane();
    await t.createCluster('gone');
    process.on('unhandledRejection', onRejection);
  });
  after(async () => {
    process.off('unhandledRejection', onRejection);
    walSyncHoldForTests.hold = undefined;
    await t?.close();
    if (t) removeDir(t.dataDir);
  });

  it('answers nobody and keeps serving when the sync its result waited for fails after the client left', async () => {
    const cp = t!;
    const agent: TestAgent = await cp.agent('gone', 'cluster-agent');
    await cp.admin.request('POST', '/v1/commands', { target: { cluster: 'gone' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\nmetadata: {name: gone}\n' } });
    const claimed = (await agent.client.poll(0)).command;
    assert.ok(claimed, 'the command is claimed');
    agent.client.close();

    // The result's answer waits for a WAL sync that the test holds, then fails.
    const fail: ((err: Error) => void)[] = [];
    walSyncHoldForTests.hold = () => new Promise<void>((_, reject) => fail.push(reject));
    const session = http2.connect(cp.url, { ca: cp.caPem, servername: 'localhost', cert: agent.identity.certificate, key: agent.keys.privateKeyPem });
    session.on('error', () => undefined);
    await new Promise((r) => session.once('connect', r));
    const s = session.request({ ':method': 'POST', ':path': `/v1/agent/commands/${claimed.id}/result`, 'content-type': 'application/json' });
    s.on('error', () => undefined);
    s.end(JSON.stringify({ leaseId: claimed.leaseId, outcome: 'succeeded' }));
    await eventually(() => fail.length > 0, 10_000, 'the result to wait for the held sync');

    // The agent goes away; the server sees its connection closed.
    session.destroy();
    await eventually(() => cp.cp.connections().http2 === 0, 10_000, 'the server to see the connection closed');
    fail.shift()!(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    walSyncHoldForTests.hold = undefined;
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(rejections.map(String), [], 'no unhandled rejection (tether server exits on one)');

    // Still serving: a new connection is answered, 503 JSON (a failed WAL sync leaves storage unavailable until a restart).
    const again = http2.connect(cp.url, { ca: cp.caPem, servername: 'localhost', cert: agent.identity.certificate, key: agent.keys.privateKeyPem });
    again.on('error', () => undefined);
    try {
      const who = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const r = again.request({ ':method': 'GET', ':path': '/v1/agent/whoami' });
        let status = 0;
        let body = '';
        r.on('response', (h) => (status = Number(h[':status'])));
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('close', () => (status ? resolve({ status, body }) : reject(new Error('no answer'))));
        r.on('error', reject);
      });
      assert.equal(who.status, 503, who.body);
      assert.equal(JSON.parse(who.body).error.code, 'storage_unavailable');
    } finally {
      again.destroy();
    }
  });
});
