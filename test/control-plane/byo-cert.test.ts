/**
 * Bring-your-own certificate for the public endpoint, on a real `tether server` process: a second,
 * real CA made here with openssl issues certificates for `localhost`. Clients asking for that name
 * (the CLI) get it and verify it with that CA; agents (by IP, no SNI) keep the certificate from the
 * Tether CA they pin. SIGHUP swaps the certificate for new connections while an agent's held HTTP/2
 * connection stays up, and a bad pair on SIGHUP is refused without harm.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { HttpClient } from '../../common/http-client.ts';
import { generateKeyPair } from '../../common/csr.ts';
import { AgentClient, bootstrapAgent } from '../../common/agent/agent-client.ts';
import { eventually, freePort, removeDir, spawnControlPlane, stopProcess, tempDir } from '../support/control-plane.ts';
import { runCli } from '../support/cli.ts';

function openssl(cwd: string, args: string[]) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA of its own (not Tether's), as a public CA would be. */
function makeCa(dir: string) {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'public-ca.key', '-out', 'public-ca.crt', '-days', '30', '-subj', '/CN=Test Public Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return readFileSync(join(dir, 'public-ca.crt'), 'utf8');
}

/** A server certificate for `names` from that CA; returns the chain (leaf + CA) and the key paths. */
function issue(dir: string, name: string, names: string[]) {
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${names[0]}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'public-ca.crt', '-CAkey', 'public-ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '10', '-extfile', `${name}.ext`]);
  const leaf = readFileSync(join(dir, `${name}.crt`), 'utf8');
  writeFileSync(join(dir, `${name}.chain.crt`), leaf + readFileSync(join(dir, 'public-ca.crt'), 'utf8'));
  return { chain: join(dir, `${name}.chain.crt`), key: join(dir, `${name}.key`), fingerprint: new X509Certificate(leaf).fingerprint256 };
}

/** The fingerprint of the certificate a new TLS connection is served, for an SNI name or none. */
async function servedFingerprint(port: number, servername?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

describe('bring-your-own certificate for the public endpoint', function () {
  this.timeout(90_000);
  let dir: string;
  let dataDir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof spawnControlPlane>> | undefined;
  let publicCa: string;
  let first: ReturnType<typeof issue>;
  let tetherCaPem: string;
  let adminToken: string;
  let agent: AgentClient;
  // The files the server was started with; a renewal replaces them in place.
  const certFile = () => join(dir, 'live.crt');
  const keyFile = () => join(dir, 'live.key');
  const install = (c: { chain: string; key: string }) => {
    writeFileSync(`${certFile()}.new`, readFileSync(c.chain));
    writeFileSync(`${keyFile()}.new`, readFileSync(c.key), { mode: 0o600 });
    renameSync(`${keyFile()}.new`, keyFile());
    renameSync(`${certFile()}.new`, certFile());
  };
  const cli = (ca: string) => ({ TETHER_URL: `https://localhost:${port}`, TETHER_CA_FILE: ca, TETHER_API_KEY: adminToken, HOME: dir });

  before(async () => {
    dir = tempDir('tether-byo-');
    dataDir = join(dir, 'data');
    publicCa = makeCa(dir);
    first = issue(dir, 'first', ['localhost', 'cp.example.test']);
    install(first);
    port = await freePort();
    // The environment variables, as the systemd unit's EnvironmentFile sets them.
    server = await spawnControlPlane(dataDir, port, [], { TETHER_TLS_CERT: certFile(), TETHER_TLS_KEY: keyFile() });
    assert.match(server.output(), /public certificate in service/);
    tetherCaPem = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  });
  after(async () => {
    agent?.close();
    if (server) await stopProcess(server.proc, 'SIGKILL');
    if (dir) removeDir(dir);
  });

  it('serves the public certificate to clients asking for its names, the Tether one to the rest', async () => {
    const tetherServerFp = new X509Certificate(readFileSync(join(dataDir, 'server.crt'))).fingerprint256;
    assert.equal(await servedFingerprint(port, 'localhost'), first.fingerprint);
    assert.equal(await servedFingerprint(port, 'cp.example.test'), first.fingerprint);
    assert.equal(await servedFingerprint(port), tetherServerFp, 'no SNI (an IP address): the Tether certificate');
    assert.equal(await servedFingerprint(port, 'agents.example.test'), tetherServerFp, 'a name the public certificate does not cover');
  });

  it('the CLI verifies the public name with the public CA (and not with the Tether CA)', async () => {
    writeFileSync(join(dir, 'public-ca.pem'), publicCa);
    writeFileSync(join(dir, 'tether-ca.pem'), tetherCaPem);
    const ok = await runCli(['clusters', 'create', 'byo1'], cli(join(dir, 'public-ca.pem')));
    assert.equal(ok.code, 0, ok.stderr);
    const list = await runCli(['clusters', 'list', '--json'], cli(join(dir, 'public-ca.pem')));
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((JSON.parse(list.stdout) as { cid: string }[]).map((c) => c.cid), ['byo1']);
    const pinned = await runCli(['clusters', 'list'], cli(join(dir, 'tether-ca.pem')));
    assert.equal(pinned.code, 1);
    assert.match(pinned.stderr, /certificate|self.signed|issuer/i);
  });

  it('an agent pinning the Tether CA bootstraps and works; SIGHUP swaps the certificate for new connections without dropping it', async () => {
    const admin = new HttpClient({ baseUrl: `https://127.0.0.1:${port}`, ca: tetherCaPem, bearerToken: adminToken });
    try {
      const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'byo1', role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const id = await bootstrapAgent({ url: `https://127.0.0.1:${port}`, caPem: tetherCaPem, token, keys });
      agent = new AgentClient(`https://127.0.0.1:${port}`, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: tetherCaPem });
      await agent.heartbeat({ running: [] });
      assert.equal(agent.connections, 1);

      // The agent holds a long poll on its HTTP/2 connection while the certificate is renewed.
      const held = agent.poll(20);
      const scraper = new HttpClient({ baseUrl: `https://127.0.0.1:${port}`, ca: tetherCaPem, bearerToken: readFileSync(join(dataDir, 'metrics-token'), 'utf8').trim() });
      await eventually(async () => (await scraper.request<string>('GET', '/metrics?name=tether_long_polls_held')).body.includes('tether_long_polls_held 1'), 10_000, 'the held poll');
      scraper.close();
      const second = issue(dir, 'second', ['localhost']);
      install(second);
      const before = server!.output().length;
      server!.proc.kill('SIGHUP');
      await eventually(() => server!.output().slice(before).includes('public certificate reloaded'), 10_000, 'the reload');
      assert.equal(server!.proc.exitCode, null, 'SIGHUP does not stop the server');
      assert.equal(await servedFingerprint(port, 'localhost'), second.fingerprint, 'a new connection gets the new certificate');
      assert.equal(await servedFingerprint(port, 'cp.example.test'), new X509Certificate(readFileSync(join(dataDir, 'server.crt'))).fingerprint256, 'a name the new one does not cover');

      // The held poll is answered on the same connection by a command submitted after the reload.
      const sub = await admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'byo1' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' } });
      const got = (await held).command;
      assert.equal(got?.id, sub.body.id);
      await agent.report(got.id, { leaseId: got.leaseId, outcome: 'succeeded' });
      assert.equal(agent.connections, 1, 'the agent kept its connection');
      const list = await runCli(['clusters', 'list'], cli(join(dir, 'public-ca.pem')));
      assert.equal(list.code, 0, list.stderr);
    } finally {
      admin.close();
    }
  });

  it('an agent that also trusts the public CA works by the public name: its client certificate is still verified there', async () => {
    const admin = new HttpClient({ baseUrl: `https://127.0.0.1:${port}`, ca: tetherCaPem, bearerToken: adminToken });
    try {
      const token = (await admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'byo1', role: 'cluster-agent' })).body.token;
      const keys = generateKeyPair();
      const both = publicCa + tetherCaPem;
      const id = await bootstrapAgent({ url: `https://localhost:${port}`, caPem: both, token, keys });
      const byName = new AgentClient(`https://localhost:${port}`, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: both });
      try {
        await byName.heartbeat({ running: [] });
        assert.equal((await byName.poll(0)).command, null);
      } finally {
        byName.close();
      }
      // A certificate from another CA is still refused on those connections.
      const stranger = generateKeyPair();
      const strangerCert = (() => {
        writeFileSync(join(dir, 'stranger.key'), stranger.privateKeyPem);
        execFileSync('openssl', ['req', '-new', '-key', 'stranger.key', '-out', 'stranger.csr', '-subj', '/CN=stranger'], { cwd: dir, stdio: 'ignore' });
        execFileSync('openssl', ['x509', '-req', '-in', 'stranger.csr', '-CA', 'public-ca.crt', '-CAkey', 'public-ca.key', '-CAcreateserial', '-out', 'stranger.crt', '-days', '2'], { cwd: dir, stdio: 'ignore' });
        return readFileSync(join(dir, 'stranger.crt'), 'utf8');
      })();
      const impostor = new AgentClient(`https://localhost:${port}`, { certPem: strangerCert, keyPem: stranger.privateKeyPem, caPem: both });
      try {
        await assert.rejects(impostor.heartbeat({ running: [] }), (err: Error & { status?: number }) => err.status === 401);
      } finally {
        impostor.close();
      }
    } finally {
      admin.close();
    }
  });

  it('refuses a bad pair on SIGHUP and keeps serving the one in service', async () => {
    const inService = await servedFingerprint(port, 'localhost');
    const other = issue(dir, 'other', ['localhost']);
    writeFileSync(keyFile(), readFileSync(first.key)); // a key that is not the new certificate's
    writeFileSync(certFile(), readFileSync(other.chain));
    const before = server!.output().length;
    server!.proc.kill('SIGHUP');
    await eventually(() => server!.output().slice(before).includes('public certificate refused'), 10_000, 'the refusal');
    assert.match(server!.output().slice(before), /does not belong to the certificate/);
    assert.equal(server!.proc.exitCode, null);
    assert.equal(await servedFingerprint(port, 'localhost'), inService);
    await agent.heartbeat({ running: [] });
  });

  it('refuses to start with a certificate and a key that do not match, or with one of the two', async () => {
    const p = await freePort();
    await assert.rejects(spawnControlPlane(join(dir, 'data2'), p, ['--tls-cert', certFile(), '--tls-key', keyFile()]), /control plane exited \(1\)[\s\S]*does not belong to the certificate/);
    const half = await runCli(['server', '--data-dir', join(dir, 'data3'), '--listen', `127.0.0.1:${p}`, '--tls-cert', certFile()], {});
    assert.equal(half.code, 2);
    assert.match(half.stderr, /--tls-cert and --tls-key go together/);
  });

  it('SIGHUP without a certificate configured changes nothing and does not stop the server', async () => {
    const plain = await spawnControlPlane(join(dir, 'plain'), await freePort());
    try {
      plain.proc.kill('SIGHUP');
      await eventually(() => plain.output().includes('nothing to reload'), 10_000, 'the reload message');
      assert.equal(plain.proc.exitCode, null);
      assert.equal(plain.proc.signalCode, null);
    } finally {
      await stopProcess(plain.proc);
    }
  });
});
