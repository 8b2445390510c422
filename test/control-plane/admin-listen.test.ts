/**
 * `--admin-listen`: the admin API on a listening socket of its own. A control plane that falls
 * behind accepts one connection per pass over its ready sockets, per listening socket, and with
 * the agents' accept queue full the operator's connect timed out behind thousands of agents'
 * (docs/performance.md, "The 20,000-agent ramp that locks out its operator"). Here: the second
 * address serves the admin API over HTTP/1.1 through the same TLS server and limits, refuses
 * agents (HTTP/2), closes with the server, and the CLI takes it or refuses a malformed one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';

const hb = { version: 't', metrics: {}, running: [] };

/** The ALPN protocol the server picked, or what happened to the connection after the handshake. */
function afterHandshake(url: string, caPem: string, protocols: string[]): Promise<{ alpn: string | false; closedByServer: boolean }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: caPem, ALPNProtocols: protocols }, () => {
      const alpn = s.alpnProtocol ?? false;
      const t = setTimeout(() => {
        s.destroy();
        resolve({ alpn, closedByServer: false });
      }, 1000);
      s.once('close', () => {
        clearTimeout(t);
        resolve({ alpn, closedByServer: true });
      });
      s.resume();
    });
    s.on('error', (err) => (s.alpnProtocol === undefined ? reject(err) : undefined));
  });
}

describe('control plane: the admin API on an address of its own (--admin-listen)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;

  before(async () => {
    t = await startTestControlPlane({ admin: { host: '127.0.0.1', port: 0 } });
    await t.createCluster('adm1');
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  it('serves the admin API over HTTP/1.1 on both addresses, with the same certificate and token', async () => {
    assert.ok(t.cp.adminUrl, 'an admin URL');
    assert.notEqual(new URL(t.cp.adminUrl).port, new URL(t.url).port);
    const admin = new HttpClient({ baseUrl: t.cp.adminUrl, ca: t.caPem, bearerToken: t.adminToken });
    try {
      assert.equal((await admin.request<{ aid: string }>('GET', '/v1/whoami')).body.aid, t.aid);
      const created = await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'adm1' }, type: 'manifest', spec: { manifests: 'kind: X' } });
      // One server behind both: what one address wrote, the other reads.
      assert.equal((await t.admin.request<{ id: number }>('GET', `/v1/commands/${created.body.id}`)).body.id, created.body.id);
      const anonymous = new HttpClient({ baseUrl: t.cp.adminUrl, ca: t.caPem });
      try {
        await assert.rejects(anonymous.request('GET', '/v1/whoami'), (err: { status?: number }) => err.status === 401);
      } finally {
        anonymous.close();
      }
    } finally {
      admin.close();
    }
  });

  it('refuses agents there: an HTTP/2 connection is closed after its handshake; the agents\' address serves them', async () => {
    const onAdmin = await afterHandshake(t.cp.adminUrl!, t.caPem, ['h2']);
    assert.deepEqual(onAdmin, { alpn: 'h2', closedByServer: true });
    const onAgents = await afterHandshake(t.url, t.caPem, ['h2']);
    assert.deepEqual(onAgents, { alpn: 'h2', closedByServer: false });
    const a = await t.agent('adm1', 'cluster-agent');
    try {
      assert.deepEqual((await a.client.heartbeat(hb)).cancel, []);
    } finally {
      a.client.close();
    }
  });

  it('stops listening there when the control plane closes', async () => {
    const own = await startTestControlPlane({ admin: { host: '127.0.0.1', port: 0 } });
    const port = Number(new URL(own.cp.adminUrl!).port);
    await own.close();
    removeDir(own.dataDir);
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
  });

  it('bin/tether server takes TETHER_ADMIN_LISTEN and refuses one that is not host:port', async () => {
    const run = (env: NodeJS.ProcessEnv) => {
      const dataDir = tempDir();
      const proc = spawn('bash', [join(REPO_ROOT, 'bin/tether'), 'server', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      return new Promise<{ code: number | null; output: string }>((resolve) => {
        const seen = (d: Buffer) => {
          output += d;
          if (/admin API also on https:\/\/127\.0\.0\.1:\d+/.test(output)) proc.kill('SIGTERM');
        };
        proc.stdout!.on('data', seen);
        proc.stderr!.on('data', seen);
        proc.on('close', (code) => {
          removeDir(dataDir);
          resolve({ code, output });
        });
      });
    };
    const bad = await run({ TETHER_ADMIN_LISTEN: 'localhost' });
    assert.notEqual(bad.code, 0, bad.output);
    assert.match(bad.output, /--admin-listen must be host:port \(got localhost\)/);
    const good = await run({ TETHER_ADMIN_LISTEN: '127.0.0.1:0' });
    assert.match(good.output, /control plane listening on https:\/\/127\.0\.0\.1:\d+ \(admin API also on https:\/\/127\.0\.0\.1:\d+\)/, good.output);
  });
});
