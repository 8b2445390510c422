/**
 * The control plane as a systemd service: the unit is hardened, scripts/install-server.sh stages it
 * pointing at the checkout, `systemd-analyze verify` accepts it and `systemd-analyze security`
 * rates its exposure below 3.0 (printed). PID 1 here is not systemd, so the service itself cannot be
 * started: its command line, environment and reload signal are run as a plain process instead.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { readTree } from '../support/bundles.ts';
import { bareRepo } from '../cluster-agent/support.ts';
import { REPO_ROOT, eventually, freePort, removeDir, stopProcess, tempDir } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';

const UNIT = join(REPO_ROOT, 'control-plane/systemd/tether-server.service');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function haveSystemdAnalyze(ctx: Mocha.Context) {
  try {
    accessSync(SYSTEMD_ANALYZE, constants.X_OK);
  } catch {
    console.log(`      skipped: ${SYSTEMD_ANALYZE} is not installed (Debian package systemd; .ci/run installs it)`);
    ctx.skip();
  }
}

/** The system calls a systemd syscall set (`@name`) stands for, groups expanded. */
function expandSyscallSet(name: string, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(name)) return out;
  seen.add(name);
  const text = execFileSync(SYSTEMD_ANALYZE, ['syscall-filter', name], { encoding: 'utf8' });
  for (const line of text.split('\n').slice(1)) {
    const n = line.trim();
    if (!n || n.startsWith('#')) continue;
    if (n.startsWith('@')) for (const x of expandSyscallSet(n, seen)) out.add(x);
    else out.add(n);
  }
  return out;
}

/** What the unit's SystemCallFilter= lines allow: the first an allow-list, `~` lines taken away. */
function allowedSyscalls(filters: string[]): Set<string> {
  const allowed = new Set<string>();
  for (const f of filters) {
    const deny = f.startsWith('~');
    for (const item of f.replace(/^~/, '').split(/\s+/).filter(Boolean)) {
      const names = item.startsWith('@') ? expandSyscallSet(item) : new Set([item]);
      for (const n of names) deny ? allowed.delete(n) : allowed.add(n);
    }
  }
  return allowed;
}

/** `Key=value` lines of the [Service] section (a key may repeat). */
function serviceSettings(text: string): [string, string][] {
  const section = text.split(/^\[Service\]$/m)[1]!.split(/^\[/m)[0]!;
  return section
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

describe('control plane: systemd service', function () {
  before(function () {
    sqliteOnly(this, 'the unit runs tether server as shipped, on SQLite in its StateDirectory; the PostgreSQL pass would repeat the SQLite run');
  });
  this.timeout(60_000);
  const text = readFileSync(UNIT, 'utf8');
  let dir: string;
  let staged: string;

  before(async () => {
    dir = tempDir('tether-vm-service-');
    const r = await run('bash', [join(REPO_ROOT, 'scripts/install-server.sh'), '--destdir', join(dir, 'root')]);
    assert.equal(r.code, 0, r.stderr);
    staged = join(dir, 'root/etc/systemd/system/tether-server.service');
  });
  after(() => {
    if (dir) removeDir(dir);
  });

  it('runs as its own user in a sandbox with no capability, restarting on failure', () => {
    const s = serviceSettings(text);
    const get = (k: string) => s.filter(([key]) => key === k).map(([, v]) => v);
    for (const [k, v] of [
      ['User', 'tether'],
      ['StateDirectory', 'tether-server'],
      ['StateDirectoryMode', '0700'],
      ['UMask', '0077'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['AmbientCapabilities', ''],
      ['Restart', 'on-failure'],
      ['ExecReload', '/bin/kill -HUP $MAINPID'],
      ['ExecStart', '/opt/tether/bin/tether server --data-dir /var/lib/tether-server'],
    ]) {
      assert.deepEqual(get(k!), [v], `${k}=${v}`);
    }
    assert.deepEqual(get('SystemCallFilter'), ['@system-service', '~@privileged @resources', 'setpriority']);
    assert.deepEqual(get('RestrictAddressFamilies'), ['AF_UNIX AF_INET AF_INET6']);
    // The sysusers entry creates that user with the state folder as its home.
    assert.match(readFileSync(join(REPO_ROOT, 'control-plane/systemd/tether-server.sysusers'), 'utf8'), /^u tether - "Tether control plane" \/var\/lib\/tether-server$/m);
  });

  it('install-server.sh stages the unit, the sysusers entry and a private settings file for this checkout', () => {
    const unit = readFileSync(staged, 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${REPO_ROOT}/bin/tether server --data-dir /var/lib/tether-server$`, 'm'));
    assert.match(unit, new RegExp(`^Environment=TETHER_CACHE=${REPO_ROOT}/\\.cache$`, 'm'));
    assert.ok(!unit.includes('/opt/tether/'), 'every /opt/tether path points at the checkout');
    assert.equal(readFileSync(join(dir, 'root/etc/sysusers.d/tether-server.conf'), 'utf8'), readFileSync(join(REPO_ROOT, 'control-plane/systemd/tether-server.sysusers'), 'utf8'));
    assert.equal(statSync(join(dir, 'root/etc/tether-server/server.env')).mode & 0o777, 0o640);
  });

  it('passes systemd-analyze verify', async function () {
    haveSystemdAnalyze(this);
    const r = await run(SYSTEMD_ANALYZE, ['verify', staged]);
    const out = `${r.stdout}${r.stderr}`.trim();
    assert.equal(r.code, 0, out);
    assert.equal(out, '', 'no warning about the unit');
  });

  it('rates an exposure below 3.0 in systemd-analyze security', async function () {
    haveSystemdAnalyze(this);
    const r = await run(SYSTEMD_ANALYZE, ['security', '--offline=true', '--threshold=30', staged]);
    assert.equal(r.code, 0, r.stderr);
    const m = /Overall exposure level for tether-server\.service: (\d+\.\d+) (\S+)/.exec(r.stdout);
    assert.ok(m, r.stdout.slice(-500));
    console.log(`      systemd-analyze security: exposure ${m[1]} ${m[2]}`);
    assert.ok(Number(m[1]) < 3.0, `exposure ${m[1]}`);
    assert.equal(m[2], 'OK');
  });

  it("every system call and socket family the server uses is allowed by the unit's filters (strace)", async function () {
    haveSystemdAnalyze(this);
    try {
      accessSync('/usr/bin/strace', constants.X_OK);
    } catch {
      console.log('      skipped: /usr/bin/strace is not installed (Debian package strace; .ci/run installs it)');
      this.skip();
    }
    this.timeout(180_000);
    const s = serviceSettings(readFileSync(staged, 'utf8'));
    const work = join(dir, 'strace');
    const dataDir = join(work, 'data');
    execFileSync('mkdir', ['-p', dataDir]);
    // A certificate to serve and reload (the SIGHUP path), made with openssl.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(work, 'tls.key'), '-out', join(work, 'tls.crt'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { PATH: '/usr/bin:/bin', HOME: dataDir, TETHER_LOG_LEVEL: 'info', TETHER_CACHE: process.env.TETHER_CACHE ?? join(homedir(), '.cache/tether') };
    Object.assign(env, { TETHER_ALLOW_FILE_ROOTS: work, TETHER_LISTEN: `127.0.0.1:${port}`, TETHER_TLS_CERT: join(work, 'tls.crt'), TETHER_TLS_KEY: join(work, 'tls.key') });
    const [cmd, ...args] = s.find(([k]) => k === 'ExecStart')![1].split(' ').map((a) => (a === '/var/lib/tether-server' ? dataDir : a));
    const trace = join(work, 'trace');
    const proc = spawn('/usr/bin/strace', ['-f', '-qq', '-o', trace, cmd!, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    try {
      await eventually(() => out.includes('control plane ready'), 120_000, `the server to start under strace:\n${out}`);
      const caPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
      const url = `https://127.0.0.1:${port}`;
      const admin = new HttpClient({ baseUrl: url, ca: caPem, bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(), timeoutMs: 60_000 });
      try {
        // What the server does in service: the admin API, a bootstrap, an agent on HTTP/2, a bundle source from git, a reload, a stop.
        await admin.request('POST', '/v1/clusters', { cid: 'sandbox1' });
        const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'sandbox1', role: 'cluster-agent' })).body.token;
        const keys = generateKeyPair();
        const id = await bootstrapAgent({ url, caPem, token, keys });
        const agent = new AgentClient(url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem });
        try {
          await agent.heartbeat({ running: [], metrics: { cpuPercent: 1 } });
          const sub = await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'sandbox1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' } });
          const c = (await agent.poll(1)).command!;
          assert.equal(c.id, sub.body.id);
          await agent.logs(c.id, c.leaseId, [{ stream: 'stdout', text: 'ok' }]);
          await agent.report(c.id, { leaseId: c.leaseId, outcome: 'succeeded' });
        } finally {
          agent.close();
        }
        const repo = bareRepo(work, 'stacks');
        repo.commit(readTree(join(REPO_ROOT, 'bundles/webapp'), 'webapp'));
        await admin.request('POST', '/v1/bundles', { name: 'webapp', url: repo.url, ref: 'main', path: 'webapp' });
        await admin.request('POST', '/v1/instances', { bundle: 'webapp', cluster: 'sandbox1' });
        const scraper = new HttpClient({ baseUrl: url, ca: caPem, bearerToken: readFileSync(join(dataDir, 'metrics-token'), 'utf8').trim(), timeoutMs: 60_000 });
        try {
          await scraper.request('GET', '/metrics');
        } finally {
          scraper.close();
        }
      } finally {
        admin.close();
      }
      const mainPid = Number(execFileSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' }).trim().split('\n')[0]);
      process.kill(mainPid, 'SIGHUP');
      await eventually(() => out.includes('public certificate reloaded'), 60_000, 'the reload');
      process.kill(mainPid, 'SIGTERM');
      await eventually(() => proc.exitCode !== null, 60_000, 'the stop');
    } finally {
      if (proc.exitCode === null) {
        // The traced server first: killing strace alone leaves it running, detached.
        try {
          for (const pid of execFileSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' }).trim().split('\n')) process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
        await stopProcess(proc, 'SIGKILL');
      }
    }
    const lines = readFileSync(trace, 'utf8').split('\n');
    const used = new Set<string>();
    for (const l of lines) {
      const m = /^\d+ +(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)/.exec(l);
      if (m) used.add(m[1]!);
    }
    assert.ok(used.has('accept4') && used.has('execve') && used.has('pwrite64'), `the trace has the server's calls (${used.size})`);
    const allowed = allowedSyscalls(s.filter(([k]) => k === 'SystemCallFilter').map(([, v]) => v));
    // SQLite gives files it creates to the database's owner only when run as root (os_unix.c,
    // robust_fchown, failure ignored); the service runs as its own user, never root.
    const rootOnly = process.getuid?.() === 0 ? new Set(['fchown']) : new Set<string>();
    const refused = [...used].filter((n) => !allowed.has(n) && !rootOnly.has(n)).sort();
    assert.deepEqual(refused, [], `system calls the filter would refuse with EPERM (of ${used.size} used)`);
    const families = new Set(lines.flatMap((l) => [.../socket\((AF_[A-Z0-9]+)/.exec(l)?.slice(1) ?? []]));
    const allowedFamilies = new Set(s.find(([k]) => k === 'RestrictAddressFamilies')![1].split(' '));
    assert.deepEqual([...families].filter((f) => !allowedFamilies.has(f)), [], 'socket families outside RestrictAddressFamilies');
    console.log(`      ${used.size} distinct system calls, all allowed; socket families ${[...families].sort().join(' ')}`);
  });

  it("the unit's command line and environment start a server; its reload signal keeps it up; a stop is clean", async () => {
    const s = serviceSettings(readFileSync(staged, 'utf8'));
    const port = await freePort();
    const dataDir = join(dir, 'state');
    // systemd sets these from the unit: its Environment=, then the EnvironmentFile= (here with a loopback listen address).
    const env: NodeJS.ProcessEnv = { PATH: '/usr/bin:/bin', HOME: dataDir, TETHER_LOG_LEVEL: 'info' };
    for (const [k, v] of s) if (k === 'Environment') env[v.slice(0, v.indexOf('='))] = v.slice(v.indexOf('=') + 1);
    // The checkout's Node and packages are provisioned in the test user's cache, not <checkout>/.cache.
    env.TETHER_CACHE = process.env.TETHER_CACHE ?? join(homedir(), '.cache/tether');
    const envFile = join(dir, 'server.env');
    writeFileSync(envFile, `# as /etc/tether-server/server.env\nTETHER_LISTEN=127.0.0.1:${port}\nTETHER_SAN=agents.example.test 192.0.2.7\n`);
    for (const line of readFileSync(envFile, 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    const [cmd, ...args] = s.find(([k]) => k === 'ExecStart')![1].split(' ').map((a) => (a === '/var/lib/tether-server' ? dataDir : a));
    const proc = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    try {
      await eventually(() => out.includes('control plane ready'), 30_000, `the server to start:\n${out}`);
      assert.match(out, new RegExp(`"listen":"127\\.0\\.0\\.1:${port}"`));
      const sans = new X509Certificate(readFileSync(join(dataDir, 'server.crt'))).subjectAltName ?? '';
      assert.match(sans, /DNS:agents\.example\.test/, 'TETHER_SAN names go on the Tether certificate');
      assert.match(sans, /IP Address:192\.0\.2\.7/);
      const admin = new HttpClient({ baseUrl: `https://127.0.0.1:${port}`, ca: readFileSync(join(dataDir, 'ca.crt'), 'utf8'), bearerToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() });
      try {
        proc.kill('SIGHUP'); // ExecReload=/bin/kill -HUP $MAINPID
        await eventually(() => out.includes('nothing to reload'), 10_000, 'the reload');
        assert.equal((await admin.request<{ ok: boolean }>('GET', '/healthz')).body.ok, true);
      } finally {
        admin.close();
      }
      assert.equal(statSync(join(dataDir, 'tether.db')).mode & 0o077, 0, 'UMask 0077 and the server keep its files private');
      assert.equal(await stopProcess(proc, 'SIGTERM'), 0, 'a stop exits 0 (Restart=on-failure does not restart it)');
    } finally {
      if (proc.exitCode === null) await stopProcess(proc, 'SIGKILL');
    }
  });
});
