/**
 * The control plane as a systemd service: the unit is hardened, scripts/install-server.sh stages it
 * pointing at the checkout, `systemd-analyze verify` accepts it and `systemd-analyze security`
 * rates its exposure below 3.0 (printed). PID 1 here is not systemd, so the service itself cannot be
 * started: its command line, environment and reload signal are run as a plain process instead.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { REPO_ROOT, eventually, freePort, removeDir, stopProcess, tempDir } from '../support/control-plane.ts';

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

/** `Key=value` lines of the [Service] section (a key may repeat). */
function serviceSettings(text: string): [string, string][] {
  const section = text.split(/^\[Service\]$/m)[1]!.split(/^\[/m)[0]!;
  return section
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

describe('control plane: systemd service', function () {
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
    assert.deepEqual(get('SystemCallFilter'), ['@system-service', '~@privileged @resources']);
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
    writeFileSync(envFile, `# as /etc/tether-server/server.env\nTETHER_LISTEN=127.0.0.1:${port}\n`);
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
