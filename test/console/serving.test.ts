/**
 * The console as the control plane serves it (control-plane/http/console.routes.ts), over real
 * HTTPS from a real control plane with the build scripts/setup.sh made: index.html for client
 * routes (no-cache), hashed assets (immutable), precompressed by Accept-Encoding, the strict CSP
 * and hardening headers; the API's paths untouched; without a build, a 503 page saying what to run.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:https';
import { createServer, get as httpGet, type Server } from 'node:http';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import express from 'express';
import { CONSOLE_DIR, consoleRoutes, pickEncoding } from '../../control-plane/http/console.routes.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

describe('console: served by the control plane', function () {
  let t: TestControlPlane;
  const fetchRaw = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    new Promise<Answer>((resolve, reject) => {
      const u = new URL(t.url);
      const req = request({ host: u.hostname, port: u.port, path, method, headers, ca: t.caPem, servername: 'localhost' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });

  before(async function () {
    assert.ok(existsSync(join(CONSOLE_DIR, 'index.html')), 'scripts/setup.sh built the console into dist/console');
    t = await startTestControlPlane();
  });
  after(async () => {
    await t.close();
    removeDir(t.dataDir);
  });

  it('answers / and client routes with index.html, never cached, with a strict CSP', async () => {
    for (const path of ['/', '/jobs/42', '/instances/web-abcde', '/signin?next=%2Fjobs']) {
      const r = await fetchRaw(path);
      assert.equal(r.status, 200, path);
      assert.match(String(r.headers['content-type']), /^text\/html/);
      assert.equal(r.headers['cache-control'], 'no-cache');
      const csp = String(r.headers['content-security-policy']);
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers['referrer-policy'], 'no-referrer');
      const html = r.body.toString();
      assert.match(html, /<script type="module" src="\/assets\/app-[A-Z0-9]+\.js"><\/script>/);
      assert.doesNotMatch(html.replace(/<script type="module" src="[^"]+"><\/script>/g, ''), /<script/, 'no inline script');
    }
  });

  it('serves hashed assets for a year, precompressed as the client accepts', async () => {
    const html = (await fetchRaw('/')).body.toString();
    const js = /src="(\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)![1]!;
    const plain = await fetchRaw(js);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.match(String(plain.headers['content-type']), /^text\/javascript/);
    assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(plain.headers.vary, 'Accept-Encoding');
    const br = await fetchRaw(js, { 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.deepEqual(brotliDecompressSync(br.body), plain.body);
    const gz = await fetchRaw(js, { 'accept-encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.deepEqual(gunzipSync(gz.body), plain.body);
    assert.ok(br.body.length < plain.body.length && gz.body.length < plain.body.length);
    const head = await fetchRaw(js, { 'accept-encoding': 'br' }, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(br.body.length));
    assert.equal(head.body.length, 0);
    // Every file of the build has both precompressed forms.
    const files = readdirSync(join(CONSOLE_DIR, 'assets')).filter((f) => !/\.(gz|br)$/.test(f));
    for (const f of files) assert.ok(existsSync(join(CONSOLE_DIR, 'assets', `${f}.br`)) && existsSync(join(CONSOLE_DIR, 'assets', `${f}.gz`)), f);
  });

  it('answers unknown or malformed asset names with a JSON 404, never a file outside the build', async () => {
    for (const p of ['/assets/nope-ABC.js', '/assets/..%2f..%2fpackage.json', '/assets/%2e%2e/index.html', '/assets/app.js.br', '/assets/']) {
      const r = await fetchRaw(p);
      assert.equal(r.status, 404, p);
      assert.equal(JSON.parse(r.body.toString()).error.code, 'not_found', p);
    }
  });

  it('leaves the API alone: /v1 paths, /healthz, and other methods than GET', async () => {
    const unknown = await fetchRaw('/v1/nope', { authorization: `Bearer ${t.adminToken}` });
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body.toString()).error.code, 'route_not_found');
    const anon = await fetchRaw('/v1/commands');
    assert.equal(anon.status, 401);
    assert.equal(JSON.parse((await fetchRaw('/healthz')).body.toString()).ok, true);
    const post = await fetchRaw('/', {}, 'POST');
    assert.equal(post.status, 404);
    assert.equal(JSON.parse(post.body.toString()).error.code, 'route_not_found');
  });

  it('picks brotli, then gzip, honouring q=0', () => {
    assert.equal(pickEncoding('gzip, br'), 'br');
    assert.equal(pickEncoding('br;q=0, gzip'), 'gzip');
    assert.equal(pickEncoding('identity'), null);
    assert.equal(pickEncoding(undefined), null);
    assert.equal(pickEncoding('*'), 'br');
    assert.equal(pickEncoding('*;q=0'), null);
  });

  describe('without a build', () => {
    let server: Server;
    let dir: string;
    before(async () => {
      dir = tempDir('tether-console-missing-');
      const app = express();
      app.use(consoleRoutes(join(dir, 'console')));
      server = createServer(app);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    });
    after(() => {
      server.close();
      removeDir(dir);
    });

    it('answers 503 with a page saying to run scripts/setup.sh', async () => {
      const { port } = server.address() as { port: number };
      const r = await new Promise<Answer>((resolve, reject) =>
        httpGet({ host: '127.0.0.1', port, path: '/overview' }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        }).on('error', reject),
      );
      assert.equal(r.status, 503);
      assert.match(String(r.headers['content-type']), /^text\/html/);
      assert.match(r.body.toString(), /scripts\/setup\.sh/);
      assert.match(String(r.headers['content-security-policy']), /default-src 'self'/);
    });
  });
});
