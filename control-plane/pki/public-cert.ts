/**
 * A certificate the operator brings for the public endpoint (`--tls-cert/--tls-key`, e.g. from
 * Let's Encrypt). It is served to clients that ask for one of its names (TLS SNI): browsers, curl
 * and the CLI reaching the control plane by its public name. Every other connection — no SNI (an
 * IP address) or a name the certificate does not cover — keeps the certificate from the Tether CA,
 * which the agents pin (they store the CA from their bootstrap). See docs/control-plane.md.
 *
 * Loaded at start (a bad pair stops the start) and again on SIGHUP (a bad pair is refused and the
 * one in service is kept).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import tls from 'node:tls';
import { TetherError, errorMessage } from '../../common/errors.ts';

export interface PublicCertificate {
  /** The leaf's DNS names and IP addresses. */
  names: string[];
  subject: string;
  issuer: string;
  notAfter: string;
  fingerprint256: string;
  context: tls.SecureContext;
  /** Whether a client that sent this SNI name gets this certificate. */
  serves(servername: string): boolean;
}

/** PEM files larger than this are refused before parsing (a chain is a few KB). */
const MAX_PEM_BYTES = 256 * 1024;

const invalid = (message: string, cause?: unknown) => new TetherError('invalid_tls_certificate', message, { status: 400, cause });

function readBounded(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw invalid(`cannot read the ${what} ${file}: ${errorMessage(err)}`, err);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_PEM_BYTES) throw invalid(`the ${what} ${file} is larger than ${MAX_PEM_BYTES} bytes`);
    const buf = Buffer.alloc(size);
    let at = 0;
    while (at < size) {
      const n = readSync(fd, buf, at, size - at, at);
      if (n === 0) break;
      at += n;
    }
    return buf.subarray(0, at).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and checks a certificate chain (leaf first) and its private key: both parse, the key is
 * the leaf's, the leaf is valid now and names at least one host. `clientCa` verifies client
 * certificates on connections served with it. Throws `invalid_tls_certificate`.
 */
export function loadPublicCertificate(certFile: string, keyFile: string, clientCa: string[], now = Date.now()): PublicCertificate {
  const certPem = readBounded(certFile, 'certificate');
  const keyPem = readBounded(keyFile, 'private key');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (err) {
    throw invalid(`${certFile} is not a PEM certificate: ${errorMessage(err)}`, err);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw invalid(`${keyFile} is not a PEM private key: ${errorMessage(err)}`, err);
  }
  if (!leaf.checkPrivateKey(key)) throw invalid(`the private key ${keyFile} does not belong to the certificate ${certFile}`);
  if (Date.parse(leaf.validTo) <= now) throw invalid(`the certificate ${certFile} expired on ${leaf.validTo}`);
  if (Date.parse(leaf.validFrom) > now + 5 * 60_000) throw invalid(`the certificate ${certFile} is not valid before ${leaf.validFrom}`);
  const names = (leaf.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => /^(DNS|IP Address):/.test(s))
    .map((s) => s.replace(/^(DNS|IP Address):/, ''));
  if (names.length === 0) throw invalid(`the certificate ${certFile} names no host (no DNS or IP subject alternative name)`);
  let context: tls.SecureContext;
  try {
    // Client certificates are still verified against the Tether CA on these connections (an agent
    // given a CA file with the public root as well as the Tether CA works by the public name too).
    context = tls.createSecureContext({ cert: certPem, key: keyPem, ca: clientCa, minVersion: 'TLSv1.2' });
  } catch (err) {
    throw invalid(`cannot use ${certFile} with ${keyFile}: ${errorMessage(err)}`, err);
  }
  return {
    names,
    subject: leaf.subject,
    issuer: leaf.issuer,
    notAfter: leaf.validTo,
    fingerprint256: leaf.fingerprint256,
    context,
    // checkHost: exact names and one-label wildcards, as a browser matches them.
    serves: (servername) => leaf.checkHost(servername, { subject: 'default' }) !== undefined,
  };
}
