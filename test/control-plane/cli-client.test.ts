/**
 * The `tether` CLI as a newcomer meets it (issue 17), as real processes against a real control
 * plane process: --version, a description on every help screen, server-side validation errors as
 * bad usage (exit 2), hints for a control plane that is not up or a wrong/non-certificate CA,
 * `tether wait`, `login` storing an absolute CA path, and `follow` saying what a queued job waits
 * for and riding out a restart of the control plane.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { HttpClient } from '../../common/http-client.ts';
import { REPO_ROOT, eventually, freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { runCli, type CliResult } from '../support/cli.ts';

/** bin/tether, the installed entry point (the bundle in dist/cli). */
function runBin(args: string[], env: NodeJS.ProcessEnv = {}, cwd = REPO_ROOT): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn('bash', [join(REPO_ROOT, 'bin/tether'), ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tether CLI: help, errors and hints (processes)', function () {
  this.timeout(60_000);
  let dataDir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof spawnControlPlane>>;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    dataDir = tempDir();
    port = await freePort();
    server = await spawnControlPlane(dataDir, port);
    env = { TETHER_URL: server.url, TETHER_CA_FILE: join(dataDir, 'ca.crt'), TETHER_API_KEY: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() };
  });
  after(async () => {
    if (server) await stopProcess(server.proc, 'SIGKILL');
    removeDir(dataDir);
  });

  it('--version prints the package version, from the sources and from bin/tether (the bundle)', async () => {
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const r of [await runCli(['--version'], {}), await runBin(['--version'])]) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`);
    }
  });

  it('every command on every help screen has a description', async () => {
    const screens: string[][] = [[]];
    const seen: string[] = [];
    while (screens.length > 0) {
      const path = screens.shift()!;
      const r = await runCli([...path, '--help'], {});
      assert.equal(r.code, 0, `${path.join(' ')}: ${r.stderr}`);
      const commands = r.stdout.split('\nCommands:\n')[1];
      if (!commands) continue;
      for (const line of commands.split('\n')) {
        const m = /^ {2}(\S+)(.*)$/.exec(line);
        if (!m || m[1] === 'help') continue;
        const described = /\S {2,}\S/.test(line.trim());
        assert.ok(described, `\`tether ${[...path, m[1]].join(' ')}\` has no description: "${line}"`);
        seen.push([...path, m[1]].join(' '));
        screens.push([...path, m[1]!]);
      }
    }
    for (const c of ['clusters create', 'clusters list', 'tokens create', 'jobs show', 'agents revoke', 'vpn users delete', 'bundles list', 'wait']) assert.ok(seen.includes(c), `${c} is on a help screen`);
  });

  it('a request the control plane refuses as invalid (400) is bad usage: exit 2 with its message', async () => {
    const r = await runCli(['clusters', 'create', 'NOT_A_CID'], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /invalid_request: cid:/);
    const refused = await runCli(['jobs', 'show', '424242'], env);
    assert.equal(refused.code, 1, 'a 404 is a refusal, not bad usage');
  });

  it('says the control plane is not up (instead of ECONNREFUSED) and `tether wait` waits for it', async () => {
    const p = await freePort();
    const down = await runCli(['clusters', 'list'], { ...env, TETHER_URL: `https://127.0.0.1:${p}` });
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`the control plane at https://127\\.0\\.0\\.1:${p} is not up yet \\(connection refused\\).*tether wait`));

    // `tether server` started from a fresh folder: wait until it has written data/admin-token and answers.
    const cwd = tempDir('tether-wait-');
    try {
      const waiting = runCli(['wait', '--timeout', '40'], { TETHER_URL: `https://127.0.0.1:${p}`, TETHER_API_KEY: '', TETHER_CA_FILE: '', XDG_CONFIG_HOME: cwd }, undefined, cwd);
      await new Promise((r) => setTimeout(r, 1000));
      const late = await spawnControlPlane(join(cwd, 'data'), p);
      try {
        const w = await waiting;
        assert.equal(w.code, 0, w.stderr);
        assert.match(w.stderr, /waiting for the control plane/);
        assert.match(w.stderr, /is up/);
        const list = await runCli(['clusters', 'list'], { TETHER_URL: `https://127.0.0.1:${p}`, TETHER_API_KEY: '', TETHER_CA_FILE: '', XDG_CONFIG_HOME: cwd }, undefined, cwd);
        assert.equal(list.code, 0, `the CLI finds data/ca.crt and data/admin-token in the current folder: ${list.stderr}`);
      } finally {
        await stopProcess(late.proc, 'SIGKILL');
      }
    } finally {
      removeDir(cwd);
    }
  });

  it('a wrong CA or a file that is not a certificate gets a hint, not a bare TLS code', async () => {
    const dir = tempDir('tether-ca-');
    try {
      const other = await spawnControlPlane(join(dir, 'other'), await freePort());
      await stopProcess(other.proc, 'SIGKILL');
      const wrong = await runCli(['clusters', 'list'], { ...env, TETHER_CA_FILE: join(dir, 'other', 'ca.crt') });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /presented a certificate not signed by the CA in .*other\/ca\.crt \((SELF_SIGNED_CERT_IN_CHAIN|CERT_SIGNATURE_FAILURE)\): pass the ca\.crt from that control plane's data folder/);
      writeFileSync(join(dir, 'notes.txt'), 'not a certificate\n');
      const junk = await runCli(['clusters', 'list'], { ...env, TETHER_CA_FILE: join(dir, 'notes.txt') });
      assert.equal(junk.code, 2);
      assert.match(junk.stderr, /notes\.txt is not a PEM certificate/);
      const key = await runCli(['clusters', 'list'], { ...env, TETHER_CA_FILE: join(dir, 'other', 'ca.key') });
      assert.equal(key.code, 2, 'a private key is not a CA certificate');
    } finally {
      removeDir(dir);
    }
  });

  it('login stores an absolute CA path, so the CLI works from any folder', async () => {
    const home = tempDir('tether-login-');
    try {
      mkdirSync(join(home, 'elsewhere'));
      const login = await runCli(['login', '--url', server.url, '--ca-file', 'ca.crt'], { TETHER_API_KEY: env.TETHER_API_KEY, TETHER_URL: '', TETHER_CA_FILE: '', XDG_CONFIG_HOME: home }, undefined, dataDir);
      assert.equal(login.code, 0, login.stderr);
      const stored = JSON.parse(readFileSync(join(home, 'tether', 'credentials.json'), 'utf8')) as { caFile: string };
      assert.equal(stored.caFile, join(dataDir, 'ca.crt'));
      const r = await runCli(['clusters', 'list'], { TETHER_API_KEY: '', TETHER_URL: '', TETHER_CA_FILE: '', XDG_CONFIG_HOME: home }, undefined, join(home, 'elsewhere'));
      assert.equal(r.code, 0, r.stderr);
    } finally {
      removeDir(home);
    }
  });
});

describe('tether follow: what a queued job waits for, and a restart of the control plane (processes)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof spawnControlPlane>>;
  let env: NodeJS.ProcessEnv;
  let admin: HttpClient;

  before(async () => {
    dataDir = tempDir();
    port = await freePort();
    server = await spawnControlPlane(dataDir, port);
    env = { TETHER_URL: server.url, TETHER_CA_FILE: join(dataDir, 'ca.crt'), TETHER_API_KEY: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() };
    admin = new HttpClient({ baseUrl: server.url, ca: readFileSync(join(dataDir, 'ca.crt'), 'utf8'), bearerToken: env.TETHER_API_KEY });
    await admin.request('POST', '/v1/clusters', { cid: 'prod1' });
    // Node n1 is registered (bootstrapped) but its agent never runs.
    const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'prod1', role: 'node', controlPlane: false })).body.token;
    await bootstrapAgent({ url: server.url, caPem: readFileSync(join(dataDir, 'ca.crt'), 'utf8'), token, keys: generateKeyPair(), nodeName: 'n1' });
  });
  after(async () => {
    admin?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    removeDir(dataDir);
  });

  it('says no cluster agent (or node agent) is connected and how to start one', async () => {
    const id = (await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'prod1' }, type: 'manifest', spec: { manifests: 'kind: X' } })).body.id;
    const nodeJob = (await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'prod1', node: 'n1' }, type: 'preflight', spec: {} })).body.id;
    for (const [job, expected] of [
      [id, /job \d+ queued: no cluster agent of cluster prod1 is connected; start one with `tether tokens create --cluster prod1 --role cluster-agent`/],
      [nodeJob, /job \d+ queued: no node agent of node n1 in cluster prod1 is connected; start one with `tether tokens create --cluster prod1 --role node`/],
    ] as const) {
      const p = spawnFollow(job, env);
      await eventually(() => expected.test(p.stderr()), 20_000, 'the explanation');
      p.proc.kill('SIGINT');
      await new Promise((r) => p.proc.once('close', r));
    }
    await admin.request('POST', `/v1/commands/${id}/cancel`);
    await admin.request('POST', `/v1/commands/${nodeJob}/cancel`);
  });

  it('resumes after a restart of the control plane from the last line received, and ends with the job', async () => {
    const caPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'prod1', role: 'cluster-agent' })).body.token;
    const keys = generateKeyPair();
    const identity = await bootstrapAgent({ url: server.url, caPem, token, keys });
    let agent = new AgentClient(server.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem });
    const id = (await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'prod1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap' } })).body.id;
    const claim = (await agent.poll(0)).command!;
    assert.equal(claim.id, id);
    await agent.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'line one' }]);

    const p = spawnFollow(id, env);
    await eventually(() => p.stdout().includes('line one'), 20_000, 'the first line');
    await stopProcess(server.proc, 'SIGKILL');
    agent.close();
    await new Promise((r) => setTimeout(r, 1000)); // follow notices, and retries while nothing listens
    server = await spawnControlPlane(dataDir, port);
    agent = new AgentClient(server.url, { certPem: identity.certificate, keyPem: keys.privateKeyPem, caPem });
    await agent.logs(id, claim.leaseId, [{ stream: 'stdout', text: 'line two' }]);
    await agent.report(id, { leaseId: claim.leaseId, outcome: 'succeeded' });
    agent.close();
    const code = await new Promise<number | null>((r) => p.proc.once('close', r));
    assert.equal(code, 0, p.stderr());
    assert.doesNotMatch(p.stderr(), /tether: aborted|aborted\)/);
    assert.match(p.stderr(), /reconnecting/);
    assert.match(p.stderr(), /resuming job \d+'s log after line \d+/);
    assert.equal(p.stdout(), 'line one\nline two\n', 'every line once');
  });
});

function spawnFollow(id: number, env: NodeJS.ProcessEnv) {
  const p = spawn(process.execPath, [join(REPO_ROOT, 'control-plane/cli/main.ts'), 'follow', String(id)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  return { proc: p, stdout: () => stdout, stderr: () => stderr };
}
