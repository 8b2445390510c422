/**
 * The control plane's own certificate authority (node-forge, RSA-3072). Created on first start in
 * the data folder: ca.crt (public), ca.key, server.crt (an ECDSA P-256 key), server.key (0600).
 * Agent certificates are issued from a CSR, so an agent's private key never leaves the agent; the
 * identity in the certificate comes from the bootstrap token, never from what the CSR asks for.
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { badRequest } from '../../common/errors.ts';
import { identityUri, type AgentIdentity } from '../../common/identity.ts';
import { writeFileAtomic } from '../../common/files.ts';
import { checkCsr } from './csr-check.ts';

export interface CaMaterial {
  caCertPem: string;
  caKeyPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

export interface IssuedCertificate {
  certPem: string;
  serial: string;
  notBefore: number;
  notAfter: number;
}

const CLOCK_SKEW_MS = 5 * 60_000;

export function defaultServerSans(): string[] {
  return [...new Set([hostname(), 'localhost', '127.0.0.1'])];
}

function newRsaKey(bits = 2048) {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey;
  const pub = forge.pki.setRsaPublicKey(key.n, key.e);
  return { key, pub, pem: privateKey };
}

/** A positive 128-bit serial with no leading zero byte, as upper-case hex (how node:tls reports it). */
function newSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b.toString('hex').toUpperCase();
}

export function createCa(now = Date.now()): { certPem: string; keyPem: string } {
  const { key, pub, pem } = newRsaKey(3072);
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + 10 * 365 * 86400_000);
  const attrs = [{ name: 'commonName', value: 'Tether control plane CA' }, { name: 'organizationName', value: 'Tether' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: pem };
}

/**
 * The CA's signing key as a native key object and its subject, parsed once per CA (every agent
 * certificate is signed with them).
 */
let caSignerCache: { caKeyPem: string; caCertPem: string; key: KeyObject; subject: forge.pki.CertificateField[] } | undefined;
function caSigner(caCertPem: string, caKeyPem: string) {
  if (caSignerCache?.caKeyPem !== caKeyPem || caSignerCache.caCertPem !== caCertPem) {
    caSignerCache = { caKeyPem, caCertPem, key: createPrivateKey(caKeyPem), subject: forge.pki.certificateFromPem(caCertPem).subject.attributes };
  }
  return caSignerCache;
}

/**
 * The control plane's TLS server certificate, with an ECDSA P-256 key signed by the (RSA) CA. A
 * full handshake then costs the server one P-256 signature instead of an RSA-2048 one (several
 * times cheaper: bench/handshake.ts), which matters when refused clients reconnect in a loop.
 * node-forge cannot hold an EC public key, so the TBSCertificate is built by forge with the CA's
 * public key as a placeholder, its SubjectPublicKeyInfo replaced by the EC key's (SPKI DER from
 * node:crypto), signed natively with the CA key, and the Certificate assembled here.
 */
export function issueServerCertificate(caCertPem: string, caKeyPem: string, sans: string[], now = Date.now()) {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const signer = caSigner(caCertPem, caKeyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.certificateFromPem(caCertPem).publicKey; // placeholder, replaced below
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + 2 * 365 * 86400_000);
  cert.setSubject([{ name: 'commonName', value: sans[0] ?? 'tether' }]);
  cert.setIssuer(signer.subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    // An ECDSA key signs (ECDHE); it never enciphers a key, so no keyEncipherment.
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: sans.map((s) => (isIP(s) ? { type: 7, ip: s } : { type: 2, value: s })) },
  ]);
  cert.signatureOid = cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature, issuer, validity, subject,
  // subjectPublicKeyInfo, [3] extensions }: the SPKI is element 6.
  const fields = tbs.value as forge.asn1.Asn1[];
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  fields[6] = forge.asn1.fromDer(forge.util.createBuffer(spki.toString('binary')));
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, signer.key);
  const { asn1 } = forge;
  const certificate = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption!).getBytes()),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
    ]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, String.fromCharCode(0) + signature.toString('binary')),
  ]);
  const der = Buffer.from(asn1.toDer(certificate).getBytes(), 'binary');
  const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

const verifyAsync = promisify(verify);
const signAsync = promisify(sign);

/**
 * Issues an agent's client certificate for `identity` from its CSR. The CSR is checked before any
 * cryptography (csr-check.ts: size, structure, RSA key of 2048–4096 bits with exponent 65537,
 * signature length), then its signature is verified and the certificate signed in OpenSSL on
 * libuv's thread pool (the callback forms of crypto.verify/sign): the event loop only builds ASN.1.
 * node-forge signing in JavaScript cost ~230 ms of event loop per certificate.
 */
export async function issueAgentCertificate(
  ca: Pick<CaMaterial, 'caCertPem' | 'caKeyPem'>,
  csrPem: string,
  identity: AgentIdentity,
  ttlMs: number,
  now = Date.now(),
): Promise<IssuedCertificate> {
  const csr = checkCsr(csrPem);
  let valid = false;
  try {
    valid = await verifyAsync(csr.digest, csr.signedBytes, csr.key, csr.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw badRequest('invalid CSR: the signature does not verify', 'invalid_csr');
  const signer = caSigner(ca.caCertPem, ca.caKeyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = csr.forgeKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  const notBefore = now - CLOCK_SKEW_MS;
  const notAfter = now + ttlMs;
  cert.validity.notBefore = new Date(notBefore);
  cert.validity.notAfter = new Date(notAfter);
  cert.setSubject([
    { name: 'commonName', value: identity.agentId },
    { name: 'organizationName', value: identity.aid },
    { name: 'organizationalUnitName', value: identity.cid },
  ]);
  cert.setIssuer(signer.subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 6, value: identityUri(identity) }] },
  ]);
  // What cert.sign() does, with the signature made natively instead of by forge's RSA.
  cert.signatureOid = cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const signature = await signAsync('sha256', Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary'), signer.key);
  (cert as { tbsCertificate?: forge.asn1.Asn1 }).tbsCertificate = tbs;
  cert.signature = signature.toString('binary');
  return { certPem: forge.pki.certificateToPem(cert), serial, notBefore, notAfter };
}

/** The SAN entries (DNS names and IPs) of a PEM certificate, as strings. */
function certificateSans(certPem: string): string[] {
  const san = new X509Certificate(certPem).subjectAltName ?? '';
  return san
    .split(',')
    .map((s) => s.trim().replace(/^(DNS|IP Address):/, ''))
    .filter(Boolean);
}

const isP256 = (key: KeyObject) => key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';

/**
 * Loads the CA and server certificate from the data folder, creating whatever is missing. The
 * server certificate is reissued when the configured SANs change, it nears expiry, it is not
 * signed by this CA, or its key is not ECDSA P-256 (data folders from before it was: their RSA
 * server certificate is replaced at start; the CA stays, so agents keep trusting the server).
 */
export function loadOrCreatePki(dataDir: string, sans: string[], now = Date.now()): CaMaterial & { created: boolean } {
  const f = (n: string) => join(dataDir, n);
  let created = false;
  if (!existsSync(f('ca.key')) || !existsSync(f('ca.crt'))) {
    const ca = createCa(now);
    writeFileAtomic(f('ca.key'), ca.keyPem, 0o600);
    writeFileAtomic(f('ca.crt'), ca.certPem, 0o644);
    created = true;
  }
  const caCertPem = readFileSync(f('ca.crt'), 'utf8');
  const caKeyPem = readFileSync(f('ca.key'), 'utf8');
  return { ...ensureServerCertificate(dataDir, { caCertPem, caKeyPem }, sans, now, created), created };
}

/**
 * The server certificate in the data folder (server.crt, server.key 0600), issued by `ca` when
 * missing, or when `force`, or for any of the reasons loadOrCreatePki gives. Replicas sharing one
 * CA (shared-ca.ts) each keep their own server certificate, for their own names.
 */
export function ensureServerCertificate(dataDir: string, ca: { caCertPem: string; caKeyPem: string }, sans: string[], now = Date.now(), force = false): CaMaterial {
  const f = (n: string) => join(dataDir, n);
  const { caCertPem, caKeyPem } = ca;
  let reissue = force || !existsSync(f('server.crt')) || !existsSync(f('server.key'));
  if (!reissue) {
    const current = readFileSync(f('server.crt'), 'utf8');
    const have = new Set(certificateSans(current));
    const x = new X509Certificate(current);
    const expiresSoon = new Date(x.validTo).getTime() - now < 30 * 86400_000;
    reissue = expiresSoon || sans.some((s) => !have.has(s)) || !x.verify(new X509Certificate(caCertPem).publicKey) || !isP256(x.publicKey);
  }
  if (reissue) {
    const server = issueServerCertificate(caCertPem, caKeyPem, sans, now);
    writeFileAtomic(f('server.key'), server.keyPem, 0o600);
    writeFileAtomic(f('server.crt'), server.certPem, 0o644);
  }
  return {
    caCertPem,
    caKeyPem,
    serverCertPem: readFileSync(f('server.crt'), 'utf8'),
    serverKeyPem: readFileSync(f('server.key'), 'utf8'),
  };
}
