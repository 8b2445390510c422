/**
 * The control plane's server certificate: an ECDSA P-256 key signed by the RSA CA (a full TLS
 * handshake costs a P-256 signature, not an RSA-2048 one), and a data folder whose server
 * certificate still has an RSA key gets an EC one at start from the same CA.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { REPO_ROOT, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { defaultServerSans } from '../../control-plane/pki/ca.ts';

/** Checks server.crt/server.key in `dir`: EC P-256, chains to ca.crt, key matches, server auth. */
function assertEcServerCertificate(dir: string): X509Certificate {
  const ca = new X509Certificate(readFileSync(join(dir, 'ca.crt')));
  const cert = new X509Certificate(readFileSync(join(dir, 'server.crt')));
  assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(ca.publicKey.asymmetricKeyType, 'rsa', 'the CA stays RSA');
  assert.ok(cert.checkIssued(ca), 'the server certificate names the CA as its issuer');
  assert.ok(cert.verify(ca.publicKey), 'the CA signature verifies');
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'server.key')))), 'server.key belongs to server.crt');
  assert.equal(statSync(join(dir, 'server.key')).mode & 0o777, 0o600);
  assert.equal(cert.ca, false);
  // OpenSSL agrees: the chain verifies for TLS server use.
  const out = execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca.crt'), join(dir, 'server.crt')], { encoding: 'utf8' });
  assert.match(out, /: OK$/m);
  return cert;
}

/** A full handshake against the running server, pinned to `caPem`: the certificate it serves. */
async function handshake(url: string, caPem: string): Promise<{ cert: tls.PeerCertificate; protocol: string | null; cipher: string }> {
  const { hostname, port } = new URL(url);
  return await new Promise((resolve, reject) => {
    const s = tls.connect({ host: hostname, port: Number(port), ca: caPem, ALPNProtocols: ['http/1.1'] }, () => {
      const r = { cert: s.getPeerCertificate(), protocol: s.getProtocol(), cipher: s.getCipher().name };
      s.destroy();
      resolve(r);
    });
    s.once('error', reject);
  });
}

describe('pki: the server certificate has an ECDSA P-256 key', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  let t: TestControlPlane | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('a new data folder gets an EC P-256 server certificate chaining to the CA, served over TLS 1.3', async () => {
    t = await startTestControlPlane();
    dirs.push(t.dataDir);
    const cert = assertEcServerCertificate(t.dataDir);
    for (const san of defaultServerSans()) assert.ok(cert.checkHost(san) || cert.checkIP(san), `covers ${san}`);
    const served = await handshake(t.url, t.caPem);
    assert.equal(served.cert.asn1Curve, 'prime256v1');
    assert.equal(served.cert.fingerprint256, cert.fingerprint256);
    assert.equal(served.protocol, 'TLSv1.3');
  });

  it('a TLS 1.2 client gets ECDHE with the ECDSA certificate', async () => {
    t = await startTestControlPlane();
    dirs.push(t.dataDir);
    const { hostname, port } = new URL(t.url);
    const cipher = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: hostname, port: Number(port), ca: t!.caPem, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }, () => {
        const c = s.getCipher().standardName;
        s.destroy();
        resolve(c);
      });
      s.once('error', reject);
    });
    assert.match(cipher, /^TLS_ECDHE_ECDSA_WITH_/);
    // Without ECDHE (static RSA key exchange, no forward secrecy) there is no handshake.
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: hostname, port: Number(port), ca: t!.caPem, maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES256-GCM-SHA384', ALPNProtocols: ['http/1.1'] }, () => {
          s.destroy();
          resolve();
        });
        s.once('error', reject);
      }),
      /handshake failure|no shared cipher|ECONNRESET|socket disconnected/i,
    );
  });

  it("an old data folder's RSA server certificate is re-issued as EC by the same CA at start", async () => {
    // The CA of release 93cc861's upgrade fixture, with an RSA-2048 server certificate as that
    // release issued it (valid for two years, covering every SAN the server asks for).
    const dir = tempDir('tether-pki-');
    dirs.push(dir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fixture = join(REPO_ROOT, 'test/fixtures/upgrade-93cc861');
    for (const f of ['tether.db', 'ca.crt', 'ca.key', 'admin-token']) {
      copyFileSync(join(fixture, f), join(dir, f));
      chmodSync(join(dir, f), f === 'ca.crt' ? 0o644 : 0o600);
    }
    const sans = defaultServerSans().map((s) => (/^[\d.]+$/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'server.key', '-out', 'server.crt',
      '-days', '700', '-subj', '/CN=localhost', '-addext', `subjectAltName=${sans}`, '-addext', 'basicConstraints=CA:FALSE',
      '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment', '-addext', 'extendedKeyUsage=serverAuth',
    ], { cwd: dir, stdio: 'pipe' });
    chmodSync(join(dir, 'server.key'), 0o600);
    const caBefore = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const old = new X509Certificate(readFileSync(join(dir, 'server.crt')));
    assert.equal(old.publicKey.asymmetricKeyType, 'rsa');
    assert.ok(old.verify(new X509Certificate(caBefore).publicKey));

    t = await startTestControlPlane({ dataDir: dir });
    assert.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), caBefore, 'the CA is kept');
    assert.equal(readFileSync(join(fixture, 'ca.key'), 'utf8'), readFileSync(join(dir, 'ca.key'), 'utf8'), 'the CA key is kept');
    const cert = assertEcServerCertificate(dir);
    assert.notEqual(cert.fingerprint256, old.fingerprint256);
    // A client that pinned the old CA (as every agent did at bootstrap) still trusts the server.
    const served = await handshake(t.url, caBefore);
    assert.equal(served.cert.asn1Curve, 'prime256v1');
    assert.equal(served.cert.fingerprint256, cert.fingerprint256);

    // Started again, the EC certificate is kept as it is.
    await t.close();
    t = await startTestControlPlane({ dataDir: dir });
    assert.equal(new X509Certificate(readFileSync(join(dir, 'server.crt'))).fingerprint256, cert.fingerprint256);
  });
});
