/**
 * Unauthenticated denial of service at the transport and the admin API (issue 11): bodies are
 * read only after the token is checked and only so many at once, every stage of a connection has
 * a timeout, unauthenticated connections are capped, /metrics needs its own token, and what a
 * hostile client sends is answered with a 4xx (or 503) JSON error. Real TLS, real HTTP/1.1 and
 * HTTP/2 on loopback; the limits are configured small so that each bites within the test.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTPS request whose body is `sent` bytes of a declared `declared`: the answer, or 'closed'. */
function partialUpload(t: TestControlPlane, o: { method?: string; path: string; token?: string; declared: number; sent: number; localAddress?: string }): Promise<Answer | 'closed'> {
  return new Promise((resolve) => {
    const req = https.request(new URL(o.path, t.url), {
      method: o.method ?? 'POST',
      ca: t.caPem,
      agent: false,
      ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      headers: { 'content-type': 'application/json', 'content-length': String(o.declared), ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', () => resolve('closed'));
    if (o.declared === 0) return void req.end();
    if (o.sent > 0) req.write(Buffer.alloc(o.sent, 0x20));
    // never ended: the rest of the declared body does not come
  });
}

/** Resolves when the socket closes (or after `ms`: 'open'). */
function closedWithin(s: net.Socket | tls.TLSSocket, ms: number): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve('closed');
    const t = setTimeout(() => resolve('open'), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve('closed');
    });
    s.resume();
  });
}

function tlsConnect(t: TestControlPlane, o: { localAddress?: string; cert?: string; key?: string } = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: t.cp.port, ca: t.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'], ...o }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads one HTTP/1.1 answer (status line, headers, body up to close) from a raw socket. */
function readAnswer(s: tls.TLSSocket, timeoutMs = 10_000): Promise<Answer | 'closed'> {
  return new Promise((resolve) => {
    let raw = '';
    const t = setTimeout(() => finish(), timeoutMs);
    const finish = () => {
      clearTimeout(t);
      const head = raw.indexOf('\r\n\r\n');
      if (head < 0) return resolve('closed');
      const [statusLine, ...lines] = raw.slice(0, head).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, body: raw.slice(head + 4) });
    };
    s.on('data', (c: Buffer) => (raw += c.toString()));
    s.once('close', finish);
    s.once('error', () => undefined);
  });
}

const errorCode = (a: Answer | 'closed') => (a === 'closed' ? 'closed' : (JSON.parse(a.body) as { error: { code: string } }).error.code);

describe('faults: hostile HTTP clients (unauthenticated denial of service)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let agent: TestAgent;
  let node: TestAgent;

  // file:// bundle sources only below the roots the fetch policy allows (docs/bundles.md).
  const repoRoot = tempDir('tether-hostile-repos-');

  before(async () => {
    t = await startTestControlPlane({
      allowFileRoots: [repoRoot],
      handshakeTimeoutMs: 500,
      headersTimeoutMs: 800,
      requestTimeoutMs: 1500,
      idleTimeoutMs: 800,
      unauthenticatedPerAddress: 4,
      bodyParsesMax: 2,
      longPollSeconds: 3,
    });
    await t.createCluster('alpha');
    agent = await t.agent('alpha', 'cluster-agent');
    node = await t.agent('alpha', 'node', { nodeName: 'n1' });
  });
  after(async () => {
    agent?.client.close();
    node?.client.close();
    await t?.close();
    if (t) removeDir(t.dataDir);
    removeDir(repoRoot);
  });

  describe('bodies', () => {
    it('refuses an anonymous 2 MB body with 401 before reading it', async () => {
      // Only 64 KiB of the declared 2 MB are sent: an answer proves the rest was never waited for.
      const a = await partialUpload(t, { path: '/v1/commands', declared: 2_000_000, sent: 65_536 });
      assert.ok(a !== 'closed', 'an answer, not a dropped connection');
      assert.equal(a.status, 401);
      assert.equal(errorCode(a), 'missing_token');
      assert.equal(a.headers.connection, 'close', 'the unread upload is not drained');
    });

    it('refuses an anonymous body on any /v1 path (known or not) before reading it', async () => {
      for (const path of ['/v1/bundles', '/v1/clusters/alpha/vpn/users', '/v1/no-such-route']) {
        const a = await partialUpload(t, { path, declared: 2_000_000, sent: 1024 });
        assert.ok(a !== 'closed' && a.status === 401, `${path}: ${a === 'closed' ? 'closed' : a.status}`);
      }
    });

    it('gives /v1/bootstrap a small body limit of its own (413)', async () => {
      const a = await partialUpload(t, { path: '/v1/bootstrap', declared: 64 * 1024, sent: 1024 });
      assert.ok(a !== 'closed');
      assert.equal(a.status, 413);
      assert.equal(errorCode(a), 'payload_too_large');
      assert.match(a.body, /8192 bytes/);
    });

    it('keeps the authenticated /v1/commands body limit at 2 MiB or more', async () => {
      const manifests = `# ${'x'.repeat(1_100_000)}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\n`;
      const r = await t.admin.request('POST', '/v1/commands', { target: { cluster: 'alpha' }, type: 'manifest', spec: { manifests } }, { accept: [400] });
      // 400 from the spec's own 1 MiB manifest check (or 202): never 413 from the body limit.
      assert.ok(r.status === 400 || r.status === 202, `status ${r.status}`);
      assert.notEqual((r.body as { error?: { code: string } }).error?.code, 'payload_too_large');
    });

    it('parses only so many bodies at once: over the cap, 503 busy with Retry-After, without reading', async () => {
      // Two authenticated uploads stall mid-body and hold the two parse slots.
      const stalled = [1, 2].map(() => partialUpload(t, { path: '/v1/commands', token: t.adminToken, declared: 100_000, sent: 10 }));
      await new Promise((r) => setTimeout(r, 200));
      const a = await partialUpload(t, { path: '/v1/commands', token: t.adminToken, declared: 100_000, sent: 10 });
      assert.ok(a !== 'closed');
      assert.equal(a.status, 503);
      assert.equal(errorCode(a), 'busy');
      assert.equal(a.headers['retry-after'], '1');
      // The stalled uploads are closed by the request timeout (408), and the slots come back.
      for (const s of await Promise.all(stalled)) assert.ok(s === 'closed' || s.status === 408, `stalled upload: ${s === 'closed' ? s : s.status}`);
      const ok = await t.admin.request('POST', '/v1/clusters', { cid: 'afterbusy' });
      assert.equal(ok.status, 201);
    });
  });

  describe('timeouts', () => {
    it('closes a connection that never sends a TLS ClientHello', async () => {
      const s = net.connect(t.cp.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      assert.equal(await closedWithin(s, 10_000), 'closed');
    });

    it('closes an HTTP/1.1 connection that sends no request, and one that trickles its headers', async () => {
      const idle = await tlsConnect(t);
      const slow = await tlsConnect(t);
      slow.write('GET /healthz HTTP/1.1\r\nhost: x\r\n');
      const trickle = setInterval(() => slow.writable && slow.write('x-a: b\r\n'), 100);
      const [a, b] = await Promise.all([closedWithin(idle, 10_000), readAnswer(slow)]);
      clearInterval(trickle);
      assert.equal(a, 'closed');
      assert.ok(b !== 'closed', 'the slow request is answered before the close');
      assert.equal(b.status, 408);
      assert.equal(errorCode(b), 'request_timeout');
    });

    it('closes an upload stalled short of its declared length (408 JSON)', async () => {
      const a = await partialUpload(t, { path: '/v1/clusters', token: t.adminToken, declared: 1000, sent: 10 });
      assert.ok(a !== 'closed');
      assert.equal(a.status, 408);
    });

    it('closes an idle HTTP/2 session with no open stream, but not an agent holding a long-poll', async () => {
      const idle = http2.connect(t.url, { ca: t.caPem, servername: 'localhost' });
      await new Promise((r) => idle.once('connect', r));
      const closed = await new Promise<'closed' | 'open'>((resolve) => {
        const to = setTimeout(() => resolve('open'), 10_000);
        idle.once('close', () => {
          clearTimeout(to);
          resolve('closed');
        });
      });
      idle.destroy();
      assert.equal(closed, 'closed');
      // The agent's poll is held 3 s (longPollSeconds), well past the 0.8 s idle timeout, and answered.
      const polled = await agent.client.poll(3);
      assert.equal(polled.command, null, 'the held poll ends with "nothing", not a dropped session');
    });
    it('cancels an agent HTTP/2 upload stalled short of its declared length, and keeps the session', async () => {
      const session = http2.connect(t.url, { ca: t.caPem, servername: 'localhost', cert: agent.identity.certificate, key: agent.keys.privateKeyPem });
      try {
        await new Promise((r) => session.once('connect', r));
        const stream = session.request({ ':method': 'POST', ':path': '/v1/agent/heartbeat', 'content-type': 'application/json', 'content-length': '1000' });
        stream.on('error', () => undefined);
        stream.write('{"version":');
        const code = await new Promise<number | 'open'>((resolve) => {
          const to = setTimeout(() => resolve('open'), 10_000);
          stream.once('close', () => {
            clearTimeout(to);
            resolve(stream.rstCode ?? -1);
          });
        });
        assert.equal(code, http2.constants.NGHTTP2_CANCEL, 'the stalled stream is cancelled by the server');
        // The session itself is still usable: another stream on it is answered.
        const who = session.request({ ':method': 'GET', ':path': '/v1/agent/whoami' });
        const status = await new Promise<number>((resolve) => who.once('response', (h) => resolve(Number(h[':status']))));
        who.resume();
        assert.equal(status, 200);
      } finally {
        session.destroy();
      }
    });
  });

  describe('connection caps', () => {
    it('caps unauthenticated connections per address (503 JSON), never agents, and releases a connection once it authenticates', async () => {
      const from = '127.0.0.7';
      const held = await Promise.all([1, 2, 3, 4].map(() => tlsConnect(t, { localAddress: from })));
      const over = await tlsConnect(t, { localAddress: from });
      const a = await readAnswer(over);
      assert.ok(a !== 'closed', 'refused with an answer');
      assert.equal(a.status, 503);
      assert.equal(errorCode(a), 'too_many_connections');
      // An agent from the same address is not counted.
      const agentSock = await tlsConnect(t, { localAddress: from, cert: agent.identity.certificate, key: agent.keys.privateKeyPem });
      agentSock.write('GET /v1/agent/whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      const who = await readAnswer(agentSock);
      assert.ok(who !== 'closed' && who.status === 200, 'the agent is served');
      // One of the held connections authenticates a request: it no longer counts, so a new one fits.
      held[0]!.write(`GET /v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${t.adminToken}\r\n\r\n`);
      await new Promise((r) => held[0]!.once('data', r));
      const fits = await tlsConnect(t, { localAddress: from });
      fits.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      const h = await readAnswer(fits);
      assert.ok(h !== 'closed' && h.status === 200, `after authentication: ${h === 'closed' ? h : h.status}`);
      for (const s of held) s.destroy();
    });
  });

  describe('a cap on all unauthenticated connections', () => {
    let small: TestControlPlane;
    let a: TestAgent;
    before(async () => {
      small = await startTestControlPlane({ unauthenticatedTotal: 8, handshakeTimeoutMs: 30_000 });
      await small.createCluster('beta');
      a = await small.agent('beta', 'cluster-agent');
    });
    after(async () => {
      a?.client.close();
      await small?.close();
      if (small) removeDir(small.dataDir);
    });

    it('lets an agent in while silent connections fill the cap: the oldest handshake makes room', async () => {
      const flood: net.Socket[] = [];
      for (let i = 0; i < 8; i++) {
        const s = net.connect({ port: small.cp.port, host: '127.0.0.1', localAddress: `127.0.1.${i + 1}` });
        await new Promise((r) => s.once('connect', r));
        s.on('error', () => undefined);
        flood.push(s);
      }
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(small.cp.connections().unauthenticated, 8);
      const oldestClosed = closedWithin(flood[0]!, 10_000);
      const fresh = new HttpClient({ baseUrl: small.url, ca: small.caPem, cert: a.identity.certificate, key: a.keys.privateKeyPem });
      try {
        const who = await fresh.request<{ agentId: string }>('GET', '/v1/agent/whoami');
        assert.equal(who.body.agentId, a.identity.agentId);
      } finally {
        fresh.close();
      }
      assert.equal(await oldestClosed, 'closed', 'the oldest silent connection was closed to make room');
      for (const s of flood) s.destroy();
    });
  });

  describe('metrics', () => {
    it('serves /metrics only with the metrics token (not anonymously, not with an account token)', async () => {
      const anonymous = await partialUpload(t, { method: 'GET', path: '/metrics', declared: 0, sent: 0 });
      assert.ok(anonymous !== 'closed' && anonymous.status === 401, 'anonymous: 401');
      const withAdmin = await t.admin.request('GET', '/metrics', undefined, { accept: [401] });
      assert.equal(withAdmin.status, 401, 'an account API token does not read platform-wide metrics');
      const scraper = new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: readFileSync(t.cp.metricsTokenFile, 'utf8').trim() });
      try {
        const m = await scraper.request<string>('GET', '/metrics?name=tether_long_polls_held');
        assert.match(String(m.body), /^tether_long_polls_held \d+/m);
      } finally {
        scraper.close();
      }
    });
  });

  describe('every hostile input is a 4xx JSON error', () => {
    it('answers oversized headers with 431 and a JSON body', async () => {
      const s = await tlsConnect(t);
      s.write(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
      const a = await readAnswer(s);
      assert.ok(a !== 'closed');
      assert.equal(a.status, 431);
      assert.equal(errorCode(a), 'headers_too_large');
    });

    it('answers an unsupported method on a known path with 405 and Allow (admin API, /healthz, agent API)', async () => {
      const put = await t.admin.request('PUT', '/v1/commands', {}, { accept: [405] });
      assert.equal(put.status, 405);
      assert.equal((put.body as { error: { code: string } }).error.code, 'method_not_allowed');
      assert.deepEqual(String(put.headers.allow).split(', ').sort(), ['GET', 'HEAD', 'POST']);
      const del = await t.admin.request('DELETE', '/healthz', undefined, { accept: [405] });
      assert.equal(del.status, 405);
      assert.equal(del.headers.allow, 'GET, HEAD');
      const get = await agent.client.request('GET', '/v1/agent/heartbeat').then(
        () => undefined,
        (e: { status?: number; code?: string }) => e,
      );
      assert.equal(get?.status, 405);
      assert.equal(get?.code, 'method_not_allowed');
      const unknown = await t.admin.request('GET', '/v1/no-such-route', undefined, { accept: [404] });
      assert.equal(unknown.status, 404, 'an unknown path stays 404');
    });

    it('refuses a cluster agent on a node-only route with 403 wrong_role (not 401)', async () => {
      const e = await agent.client.request('GET', '/v1/agent/vpn/config').then(
        () => undefined,
        (err: { status?: number; code?: string }) => err,
      );
      assert.equal(e?.status, 403);
      assert.equal(e?.code, 'wrong_role');
    });

    it('never shows the server data folder in an error message', async () => {
      // A bundle source without bundle.yaml: the refusal names the checked-out tree in the data folder.
      const repo = mkdtempSync(join(repoRoot, 'repo-'));
      try {
        const git = (...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { stdio: 'pipe' });
        git('init', '-q', '-b', 'main');
        writeFileSync(join(repo, 'README'), 'no bundle here\n');
        git('add', 'README');
        git('commit', '-qm', 'no bundle');
        await t.admin.request('POST', '/v1/bundles', { name: 'leak', url: `file://${repo}`, ref: 'main' });
        const r = await t.admin.request('POST', '/v1/instances', { bundle: 'leak', cluster: 'alpha' }, { accept: [400, 422] });
        const text = JSON.stringify(r.body);
        assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
        assert.match(text, /bundle\.yaml/, 'the refusal still says what is wrong');
        assert.ok(!text.includes(t.dataDir), `the message shows the data folder: ${text}`);
      } finally {
        removeDir(repo);
      }
    });
  });
});
