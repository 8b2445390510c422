/**
 * The control plane's fetch policy for bundle sources, attacked by a tenant: file:// outside the
 * operator's roots (another account's mirror in the bundle cache included), loopback and private
 * addresses (by literal and by name: refused before git connects), redirects, the server user's
 * own git configuration and credentials, a missing ref replacing a working source; refusals that
 * all look alike to the tenant with the reason in the server log; per-source credentials that are
 * used and never shown; per-account caches and their collection. Real git, a real smart-HTTP git
 * server (git http-backend behind node:http) and real TCP listeners on loopback.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { silentLogger } from '../../common/logger.ts';
import type { BundleSourceView } from '../../control-plane/bundles/bundles.wire.ts';
import { GitCache } from '../../control-plane/bundles/git-cache.ts';
import { addressesAllowed, classifyUrl, fetchConfig, gitEnvironment, isPublicAddress, type FetchPolicy } from '../../control-plane/bundles/fetch-policy.plan.ts';
import { eventually, freePort, REPO_ROOT, removeDir, spawnControlPlane, startTestControlPlane, stopProcess, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo, type BareRepo } from '../cluster-agent/support.ts';
import { captureLogger, type CapturedLog } from './support.ts';

const execFileAsync = promisify(execFile);

type ErrorBody = { error: { code: string; message: string } };

/** A smart-HTTP git server: `git http-backend` (CGI) behind node:http, recording every request's headers. */
async function gitHttpServer(projectRoot: string, o: { auth?: string } = {}): Promise<{ url: string; seen: { path: string; headers: IncomingHttpHeaders }[]; close(): Promise<void> }> {
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  const server = createHttpServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    seen.push({ path: u.pathname, headers: req.headers });
    if (o.auth !== undefined && req.headers.authorization !== o.auth) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
      return;
    }
    const child = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: u.pathname,
        QUERY_STRING: u.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        HTTP_GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let started = false;
    child.stdout.on('data', (d: Buffer) => {
      if (started) return void res.write(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') + 4 : head.indexOf('\n\n') >= 0 ? head.indexOf('\n\n') + 2 : -1;
      if (end < 0) return;
      started = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i <= 0) continue;
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end));
    });
    child.stdout.on('end', () => res.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

/** A TCP listener that counts connections (and holds them open without a word). */
async function tcpCounter(): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let n = 0;
  const sockets: Socket[] = [];
  const server = createTcpServer((s) => {
    n++;
    sockets.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => n,
    close: () => {
      sockets.forEach((s) => s.destroy());
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Every bare repository (a folder ending in .git) below `dir`. */
function mirrorsBelow(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (!statSync(p).isDirectory()) continue;
      if (name.endsWith('.git') && existsSync(join(p, 'HEAD'))) out.push(p);
      else walk(p);
    }
  };
  walk(dir);
  return out;
}

const WEBAPP = () => readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp');

describe('faults: the fetch policy for bundle sources', function () {
  this.timeout(120_000);
  let root: string; // the one folder file:// sources may be below; the control plane's data is in it too
  let outside: string;
  let t: TestControlPlane;
  let logs: CapturedLog;
  let repo: BareRepo;
  let b: HttpClient; // tenant B's admin client
  const register = (client: HttpClient, body: Record<string, unknown>, accept: number[] = [422]) => client.request<ErrorBody & BundleSourceView & { commit: string }>('POST', '/v1/bundles', { path: 'webapp', ref: 'main', ...body }, { accept });

  before(async () => {
    root = tempDir('tether-fetch-root-');
    outside = tempDir('tether-fetch-outside-');
    logs = captureLogger('debug');
    t = await startTestControlPlane({ dataDir: join(root, 'cp'), allowFileRoots: [root] }, { log: logs.log });
    repo = bareRepo(root, 'stacks');
    repo.commit(WEBAPP());
    const other = await t.cp.accounts.createAccount('tenant-b');
    b = new HttpClient({ baseUrl: t.url, ca: t.caPem, bearerToken: other.token });
  });
  after(async () => {
    b?.close();
    await t?.close();
    removeDir(root);
    removeDir(outside);
  });

  it('file:// only below an allowed root: a repository elsewhere is refused, one below the root is fetched', async () => {
    const elsewhere = bareRepo(outside, 'elsewhere');
    elsewhere.commit(WEBAPP());
    const refused = await register(t.admin, { name: 'elsewhere', url: elsewhere.url });
    assert.equal(refused.status, 422);
    assert.equal(refused.body.error.code, 'bundle_source_unavailable');
    const ok = await register(t.admin, { name: 'web', url: repo.url }, [201]);
    assert.match(ok.body.commit, /^[0-9a-f]{40}$/);
  });

  it('tenant B can neither fetch tenant A\'s mirror from the cache by file:// nor share it by registering the same URL', async () => {
    await register(t.admin, { name: 'web', url: repo.url }, [200, 201]);
    const mirrors = mirrorsBelow(join(t.dataDir, 'bundle-cache'));
    assert.ok(mirrors.length >= 1, 'tenant A has a mirror in the cache');
    for (const m of mirrors) {
      const r = await register(b, { name: 'stolen', url: `file://${m}`, path: 'webapp' });
      assert.equal(r.status, 422, `tenant B fetched ${m}`);
      assert.equal(r.body.error.code, 'bundle_source_unavailable');
    }
    assert.equal((await b.request('GET', '/v1/bundles/stolen', undefined, { accept: [404] })).status, 404);
    // The same URL for both tenants: two mirrors, one per account.
    await register(b, { name: 'web', url: repo.url }, [201]);
    assert.equal(mirrorsBelow(join(t.dataDir, 'bundle-cache')).length, mirrors.length + 1);
  });

  it('loopback and private addresses are refused before git connects, by literal and by name; other schemes too', async () => {
    const listener = await tcpCounter();
    try {
      for (const url of [`https://127.0.0.1:${listener.port}/r.git`, `https://localhost:${listener.port}/r.git`, `https://[::ffff:127.0.0.1]:${listener.port}/r.git`, `http://127.0.0.1:${listener.port}/r.git`, `ssh://git@127.0.0.1:${listener.port}/r.git`, `git@127.0.0.1:r.git`]) {
        const r = await register(t.admin, { name: 'internal', url });
        assert.equal(r.status, 422, url);
        assert.equal(r.body.error.code, 'bundle_source_unavailable', url);
      }
      assert.equal(listener.connections(), 0, 'git never connected');
    } finally {
      await listener.close();
    }
    const reasons = logs.lines().filter((l) => l.msg === 'bundle source not fetched').map((l) => l.reason);
    assert.ok(reasons.includes('private_address') && reasons.includes('scheme'), JSON.stringify(reasons));
  });

  it('credentials in the URL are refused as a bad request (they would be stored and shown)', async () => {
    const r = await register(t.admin, { name: 'creds', url: 'https://user:secret@example.com/r.git' }, [400]);
    assert.equal(r.body.error.code, 'invalid_request');
    assert.doesNotMatch(r.body.error.message, /secret/);
  });

  it('a ref that does not exist is refused (API and CLI) and the source of the same name stays as it was', async () => {
    const before = (await t.admin.request<BundleSourceView>('GET', '/v1/bundles/web')).body;
    const r = await register(t.admin, { name: 'web', url: repo.url, ref: 'no-such-branch' });
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'bundle_source_unavailable');
    const caFile = join(root, 'ca.pem');
    writeFileSync(caFile, t.caPem);
    const cli = await runCli(['bundles', 'register', 'web', '--url', repo.url, '--ref', 'v9-missing', '--path', 'webapp'], { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: caFile, HOME: root });
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, /bundle_source_unavailable/);
    assert.deepEqual((await t.admin.request<BundleSourceView>('GET', '/v1/bundles/web')).body, before);
    // ... and still deploys what it did: the ref resolves as before.
    const again = await register(t.admin, { name: 'web', url: repo.url }, [200]);
    assert.match(again.body.commit, /^[0-9a-f]{40}$/);
  });

  it('tether bundles delete removes the source; its mirror is collected, another account\'s of the same URL stays', async () => {
    const cache = join(t.dataDir, 'bundle-cache');
    const before = mirrorsBelow(cache);
    const caFile = join(root, 'ca.pem');
    writeFileSync(caFile, t.caPem);
    const r = await runCli(['bundles', 'delete', 'web'], { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: caFile, HOME: root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await t.admin.request('GET', '/v1/bundles/web', undefined, { accept: [404] })).status, 404);
    assert.equal((await t.admin.request<ErrorBody>('DELETE', '/v1/bundles/web', undefined, { accept: [404] })).body.error.code, 'bundle_not_found');
    // Tenant B's source of the same URL is untouched, and so is its mirror.
    assert.equal((await b.request<BundleSourceView>('GET', '/v1/bundles/web')).body.url, repo.url);
    await eventually(() => mirrorsBelow(cache).length === before.length - 1, 10_000, 'the deleted source\'s mirror collected');
  });
});

describe('faults: fetching over http (private addresses allowed by the operator)', function () {
  this.timeout(120_000);
  let dir: string;
  let t: TestControlPlane;
  let logs: CapturedLog;
  let git: Awaited<ReturnType<typeof gitHttpServer>>;
  let locked: Awaited<ReturnType<typeof gitHttpServer>>;
  const savedHome = process.env.HOME;
  const register = (body: Record<string, unknown>, accept: number[] = [422]) => t.admin.request<ErrorBody & BundleSourceView & { commit: string }>('POST', '/v1/bundles', { path: 'webapp', ref: 'main', ...body }, { accept });

  before(async () => {
    dir = tempDir('tether-fetch-http-');
    logs = captureLogger('debug');
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), allowHttp: true, allowPrivateAddresses: true, gitTimeoutSeconds: 2 }, { log: logs.log });
    mkdirSync(join(dir, 'served'));
    bareRepo(join(dir, 'served'), 'stacks').commit(WEBAPP());
    git = await gitHttpServer(join(dir, 'served'));
    locked = await gitHttpServer(join(dir, 'served'), { auth: `Basic ${Buffer.from('deployer:tok-3b1f9e').toString('base64')}` });
    // The server's own user has git configuration and an agent: none of it may reach a tenant's fetch.
    mkdirSync(join(dir, 'home'));
    writeFileSync(join(dir, 'home', '.gitconfig'), '[http]\n\textraHeader = X-Operator-Secret: operator-7f3a\n');
    process.env.HOME = join(dir, 'home');
  });
  after(async () => {
    process.env.HOME = savedHome;
    await git?.close();
    await locked?.close();
    await t?.close();
    removeDir(dir);
  });

  it('fetches over http with an environment of its own: nothing of the server user\'s git configuration is sent', async () => {
    const r = await register({ name: 'web', url: `${git.url}/stacks.git` }, [201]);
    assert.match(r.body.commit, /^[0-9a-f]{40}$/);
    assert.ok(git.seen.length > 0);
    for (const s of git.seen) assert.equal(s.headers['x-operator-secret'], undefined, `the operator's header reached ${s.path}`);
  });

  it('a closed port, a missing repository and a hanging server look alike to the tenant; the reason is in the server log', async () => {
    const closed = await freePort();
    const hanging = await tcpCounter();
    try {
      const cases = [`http://127.0.0.1:${closed}/stacks.git`, `${git.url}/missing.git`, `http://127.0.0.1:${hanging.port}/stacks.git`];
      const messages: string[] = [];
      for (const url of cases) {
        const r = await register({ name: 'probe', url });
        assert.equal(r.status, 422, url);
        assert.equal(r.body.error.code, 'bundle_source_unavailable');
        messages.push(r.body.error.message.replace(url, '<url>'));
      }
      assert.equal(new Set(messages).size, 1, `the tenant can tell them apart:\n${messages.join('\n')}`);
      assert.equal(hanging.connections(), 1);
    } finally {
      await hanging.close();
    }
    const reasons = logs.lines().filter((l) => l.msg === 'bundle source not fetched').map((l) => `${String(l.reason)}: ${String(l.detail)}`);
    assert.ok(reasons.some((r) => r.startsWith('timeout')), reasons.join('\n'));
    assert.ok(reasons.filter((r) => r.startsWith('git')).length >= 2, reasons.join('\n'));
  });

  it('git connects to the address that was checked, not to what the name resolves to later (http.curloptResolve)', async () => {
    // A name that resolves nowhere: only the pinned address can serve it.
    const port = Number(new URL(git.url).port);
    const url = `http://pinned.invalid:${port}/stacks.git`;
    const env = gitEnvironment({ PATH: process.env.PATH }, fetchConfig({ kind: 'remote', scheme: 'http', host: 'pinned.invalid', port, literal: false }, '127.0.0.1'));
    // Asynchronously: the git server answers from this very process.
    const r = await execFileAsync('git', ['ls-remote', '--heads', url], { env, encoding: 'utf8', timeout: 30_000 });
    assert.match(r.stdout, /^[0-9a-f]{40}\trefs\/heads\/main$/m);
    await assert.rejects(execFileAsync('git', ['ls-remote', '--heads', url], { env: gitEnvironment({ PATH: process.env.PATH }, []), encoding: 'utf8', timeout: 30_000 }), 'without the pin the name does not resolve');
  });

  it('redirects are not followed', async () => {
    const target = await gitHttpServer(join(dir, 'served'));
    const redirector = createHttpServer((req, res) => res.writeHead(302, { location: `${target.url}${req.url}` }).end());
    await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
    try {
      const r = await register({ name: 'redirected', url: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/stacks.git` });
      assert.equal(r.status, 422);
      assert.equal(target.seen.length, 0, 'git followed the redirect');
    } finally {
      await closeServer(redirector);
      await target.close();
    }
  });

  it('per-source credentials: used for that source, stored, never returned or logged; a source without them is refused', async () => {
    const url = `${locked.url}/stacks.git`;
    const without = await register({ name: 'private', url });
    assert.equal(without.status, 422);
    const r = await register({ name: 'private', url, username: 'deployer', password: 'tok-3b1f9e' }, [201]);
    assert.match(r.body.commit, /^[0-9a-f]{40}$/);
    assert.equal(r.body.credentials, true);
    const shown = JSON.stringify([r.body, (await t.admin.request('GET', '/v1/bundles/private')).body, (await t.admin.request('GET', '/v1/bundles')).body]);
    assert.doesNotMatch(shown, /tok-3b1f9e|deployer/);
    assert.doesNotMatch(logs.text(), /tok-3b1f9e|ZGVwbG95ZXI6dG9rLTNiMWY5ZQ/);
    // Stored: a later deployment fetches with them (the pin is taken again).
    const again = await register({ name: 'private', url, username: 'deployer', password: 'wrong' });
    assert.equal(again.status, 422, 'wrong credentials are refused');
    assert.equal((await t.admin.request<BundleSourceView>('GET', '/v1/bundles/private')).body.credentials, true, 'and the stored source is kept');
  });

  it('tether bundles register --username --password-file: the password from the file, never echoed', async () => {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, t.caPem);
    writeFileSync(join(dir, 'token'), 'tok-3b1f9e\n', { mode: 0o600 });
    const env = { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: caFile, HOME: dir };
    const r = await runCli(['bundles', 'register', 'private2', '--url', `${locked.url}/stacks.git`, '--path', 'webapp', '--username', 'deployer', '--password-file', join(dir, 'token'), '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { credentials: boolean }).credentials, true);
    assert.doesNotMatch(r.stdout + r.stderr, /tok-3b1f9e/);
    const alone = await runCli(['bundles', 'register', 'private3', '--url', `${locked.url}/stacks.git`, '--username', 'deployer'], env);
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--username and --password-file go together/);
    const missing = await runCli(['bundles', 'register', 'private3', '--url', `${locked.url}/stacks.git`, '--username', 'deployer', '--password-file', join(dir, 'nope')], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--password-file .*nope: ENOENT/);
  });
});

describe('faults: tether server --allow-file-root and TETHER_ALLOW_FILE_ROOTS', function () {
  this.timeout(60_000);
  let dir: string;
  let server: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  before(() => {
    dir = tempDir('tether-fetch-flags-');
  });
  after(async () => {
    if (server) await stopProcess(server.proc);
    removeDir(dir);
  });

  it('allows file:// below the roots of the flag (repeatable) and of the variable (colon-separated), nothing else', async () => {
    const repos = ['flag1', 'flag2', 'env1', 'env2', 'none'].map((name) => {
      mkdirSync(join(dir, name));
      const r = bareRepo(join(dir, name), 'stacks');
      r.commit(WEBAPP());
      return r;
    });
    const data = join(dir, 'cp');
    server = await spawnControlPlane(data, await freePort(), ['--allow-file-root', join(dir, 'flag1'), '--allow-file-root', join(dir, 'flag2')], { TETHER_ALLOW_FILE_ROOTS: `${join(dir, 'env1')}:${join(dir, 'env2')}` });
    const admin = new HttpClient({ baseUrl: server.url, ca: readFileSync(join(data, 'ca.crt'), 'utf8'), bearerToken: readFileSync(join(data, 'admin-token'), 'utf8').trim() });
    try {
      const statuses = [];
      for (const [i, r] of repos.entries()) statuses.push((await admin.request('POST', '/v1/bundles', { name: `s${i}`, url: r.url, ref: 'main', path: 'webapp' }, { accept: [201, 422] })).status);
      assert.deepEqual(statuses, [201, 201, 201, 201, 422]);
    } finally {
      admin.close();
    }
    const relative = spawnSync(process.execPath, [join(REPO_ROOT, 'control-plane/cli/main.ts'), 'server', '--data-dir', join(dir, 'cp2'), '--allow-file-root', 'repos'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(relative.status, 2, relative.stderr);
    assert.match(relative.stderr, /--allow-file-root takes an absolute folder/);
  });
});

describe('faults: the bundle cache is per account and collected', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = tempDir('tether-fetch-gc-');
  });
  after(() => removeDir(dir));

  it('removes mirrors of sources no longer registered and entries unused for long, keeps the rest', async () => {
    const policy: FetchPolicy = { allowHttp: false, allowPrivateAddresses: false, fileRoots: [dir], deniedPaths: [join(dir, 'cache')] };
    const cache = new GitCache(join(dir, 'cache'), { policy, environment: 'isolated', timeoutMs: 30_000, log: silentLogger() });
    const one = bareRepo(dir, 'one');
    const two = bareRepo(dir, 'two');
    one.commit(WEBAPP());
    two.commit(WEBAPP());
    const c1 = await cache.resolve('acc01', { url: one.url, ref: 'main' });
    await cache.tree('acc01', one.url, c1);
    await cache.resolve('acc01', { url: two.url, ref: 'main' });
    await cache.resolve('acc02', { url: two.url, ref: 'main' });
    assert.equal(mirrorsBelow(join(dir, 'cache')).length, 3, 'one mirror per account and URL');
    const keep = [{ account: 'acc01', url: two.url }, { account: 'acc02', url: two.url }];
    const first = await cache.collect(keep, 86_400_000);
    assert.equal(first.removed.length, 1, JSON.stringify(first.removed));
    assert.equal(mirrorsBelow(join(dir, 'cache')).length, 2);
    // acc02's mirror has not been used for two days.
    const acc02 = mirrorsBelow(join(dir, 'cache')).find((m) => !existsSync(join(m, '..', '..', 'trees')))!;
    const old = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(acc02, old, old);
    const second = await cache.collect(keep, 86_400_000);
    assert.deepEqual(second.removed, [acc02]);
    assert.equal(mirrorsBelow(join(dir, 'cache')).length, 1);
    // Collected means fetched again on next use, not refused.
    assert.match(await cache.resolve('acc02', { url: two.url, ref: 'main' }), /^[0-9a-f]{40}$/);
  });
});

describe('faults: fetches are bounded in number', function () {
  this.timeout(60_000);
  it('at most maxConcurrentFetches git fetches run at once; the others wait and then run', async () => {
    const dir = tempDir('tether-fetch-cap-');
    const hanging = await tcpCounter();
    try {
      const policy: FetchPolicy = { allowHttp: true, allowPrivateAddresses: true, fileRoots: [], deniedPaths: [] };
      const cache = new GitCache(join(dir, 'cache'), { policy, environment: 'isolated', timeoutMs: 4_000, log: silentLogger(), maxConcurrentFetches: 2 });
      const all = [1, 2, 3, 4, 5].map((i) => cache.resolve(`acc0${i}`, { url: `http://127.0.0.1:${hanging.port}/r${i}.git`, ref: 'main' }).then(() => 'fetched', () => 'refused'));
      await eventually(() => hanging.connections() >= 2, 10_000, 'two fetches connected');
      // Unbounded, all five would be connected within milliseconds; bounded, three wait for a slot.
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(hanging.connections(), 2);
      assert.deepEqual(await Promise.all(all), ['refused', 'refused', 'refused', 'refused', 'refused']);
      assert.equal(hanging.connections(), 5, 'every fetch ran in the end');
    } finally {
      await hanging.close();
      removeDir(dir);
    }
  });
});

describe('faults: fetch policy decisions (pure)', () => {
  const policy: FetchPolicy = { allowHttp: false, allowPrivateAddresses: false, fileRoots: ['/srv/git'], deniedPaths: ['/srv/git/tether-data'] };

  it('tells public addresses from loopback, private, link-local, CGNAT, unique-local and IPv4 carried in IPv6', () => {
    for (const ip of ['1.1.1.1', '140.82.112.3', '2606:4700::1111', '2a00:1450:4001::200e']) assert.equal(isPublicAddress(ip), true, ip);
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', 'fc00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '64:ff9b::a9fe:a9fe', '2002:c0a8:0101::1', '224.0.0.1', 'not-an-ip']) {
      assert.equal(isPublicAddress(ip), false, ip);
    }
    assert.equal(addressesAllowed(['1.1.1.1', '10.0.0.1'], policy).ok, false, 'one private answer refuses the host');
    assert.equal(addressesAllowed([], policy).ok, false);
    assert.equal(addressesAllowed(['10.0.0.1'], { ...policy, allowPrivateAddresses: true }).ok, true);
  });

  it('classifies URLs: https by default, http when allowed, file below a root only, nothing else', () => {
    assert.deepEqual(classifyUrl('https://git.example.com/a.git', policy), { ok: true, target: { kind: 'remote', scheme: 'https', host: 'git.example.com', port: 443, literal: false } });
    assert.equal(classifyUrl('http://git.example.com/a.git', policy).ok, false);
    assert.equal(classifyUrl('http://git.example.com/a.git', { ...policy, allowHttp: true }).ok, true);
    assert.equal(classifyUrl('file:///srv/git/a.git', policy).ok, true);
    assert.equal(classifyUrl('file:///srv/git/a.git', { ...policy, fileRoots: [] }).ok, false);
    for (const u of ['ssh://git@example.com/a.git', 'git@example.com:a.git', 'git://example.com/a.git', 'ext::sh -c touch% /tmp/x', 'https://u:p@example.com/a.git', 'file://host/srv/git/a.git']) {
      assert.equal(classifyUrl(u, policy).ok, false, u);
    }
  });

  it('pins git: one protocol, no redirects, the checked address, the source credentials only, no HOME', () => {
    const c = new Map(fetchConfig({ kind: 'remote', scheme: 'https', host: 'git.example.com', port: 443, literal: false }, '140.82.112.3', { username: 'u', password: 'p' }));
    assert.equal(c.get('protocol.allow'), 'never');
    assert.equal(c.get('protocol.https.allow'), 'always');
    assert.equal(c.get('http.followRedirects'), 'false');
    assert.equal(c.get('http.curloptResolve'), 'git.example.com:443:140.82.112.3');
    assert.equal(c.get('http.extraHeader'), `Authorization: Basic ${Buffer.from('u:p').toString('base64')}`);
    const env = gitEnvironment({ PATH: '/usr/bin' }, [...c]);
    for (const k of ['HOME', 'SSH_AUTH_SOCK', 'XDG_CONFIG_HOME', 'HTTPS_PROXY', 'http_proxy']) assert.equal(env[k], undefined, k);
    assert.equal(env.GIT_CONFIG_GLOBAL, '/dev/null');
    assert.equal(env.GIT_CONFIG_NOSYSTEM, '1');
    assert.equal(env.GIT_TERMINAL_PROMPT, '0');
    assert.equal(env.GIT_CONFIG_COUNT, String(c.size));
  });
});
