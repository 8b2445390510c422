/**
 * What a certificate signing request must be before any cryptography touches it (issue 11). A CSR
 * is untrusted input: an RSA key with a huge public exponent made node-forge's verification cost
 * seconds of event loop per request, about cubic in the request's size. So the request is parsed
 * (DER structure only, bounded in size) and its key checked against the key types the agents make
 * (common/csr.ts: RSA, 65537) first; only a key that passes is handed to a signature check, and
 * that runs in OpenSSL on the thread pool (ca.ts), never in JavaScript on the event loop.
 *
 * Pure: no I/O, no signature work. Every refusal is a 400 `invalid_csr` naming what is wrong.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { badRequest } from '../../common/errors.ts';
import { AGENT_KEY_POLICY } from '../../common/csr.ts';

/** Largest CSR accepted, PEM text and DER bytes (an RSA-4096 request with a CN is about 1.6 KB of DER). */
export const CSR_MAX_PEM_CHARS = 16 * 1024;
export const CSR_MAX_DER_BYTES = 8 * 1024;

/** Signature algorithms a CSR may be signed with, by OID, and the digest each uses. */
const SIGNATURE_ALGORITHMS: Record<string, 'sha256' | 'sha384' | 'sha512'> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

export interface CheckedCsr {
  /** The public key, checked against the policy (a native key object, for the signature check). */
  key: KeyObject;
  /** The same key as node-forge holds it, for the certificate (built only after the checks). */
  forgeKey: forge.pki.rsa.PublicKey;
  /** The DER of the CertificationRequestInfo: what the signature covers. */
  signedBytes: Buffer;
  signature: Buffer;
  digest: 'sha256' | 'sha384' | 'sha512';
}

const invalid = (why: string) => badRequest(`invalid CSR: ${why}`, 'invalid_csr');

/** Parses a PEM CSR and checks its size, structure, key type, modulus, exponent and signature length. */
export function checkCsr(pem: string): CheckedCsr {
  if (typeof pem !== 'string' || pem.length > CSR_MAX_PEM_CHARS) throw invalid(`larger than ${CSR_MAX_PEM_CHARS} characters`);
  const m = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(pem);
  if (!m) throw invalid('not a PEM certificate signing request');
  const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  if (der.length === 0) throw invalid('empty');
  if (der.length > CSR_MAX_DER_BYTES) throw invalid(`larger than ${CSR_MAX_DER_BYTES} bytes of DER`);

  let top: forge.asn1.Asn1;
  try {
    // The options form (typed as a boolean in @types/node-forge): every byte parsed, BIT STRINGs left as bytes.
    const fromDer = forge.asn1.fromDer as unknown as (b: forge.util.ByteStringBuffer, o: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean }) => forge.asn1.Asn1;
    top = fromDer(forge.util.createBuffer(der.toString('binary')), { strict: true, parseAllBytes: true, decodeBitStrings: false });
  } catch {
    throw invalid('not DER');
  }
  const [info, algorithm, bits] = children(top, 3, 'CertificationRequest') as [forge.asn1.Asn1, forge.asn1.Asn1, forge.asn1.Asn1];
  const spki = children(info, 3, 'CertificationRequestInfo')[2]!;
  const algOid = children(algorithm, 1, 'signatureAlgorithm')[0]!;
  if (algOid.type !== forge.asn1.Type.OID || typeof algOid.value !== 'string') throw invalid('no signature algorithm');
  const digest = SIGNATURE_ALGORITHMS[forge.asn1.derToOid(algOid.value)];
  if (!digest) throw invalid('the signature algorithm must be RSA with SHA-256, SHA-384 or SHA-512');

  // The key's numbers are read from the DER here, not by OpenSSL: asking OpenSSL for a huge
  // exponent (asymmetricKeyDetails) fails and leaves an error on the thread's OpenSSL error queue,
  // which the next TLS operation then reports as its own (a client error on an innocent connection).
  const { modulusLength, publicExponent } = rsaNumbers(spki);
  const policy = AGENT_KEY_POLICY;
  if (modulusLength < policy.minModulusBits || modulusLength > policy.maxModulusBits) {
    throw invalid(`the RSA modulus must be ${policy.minModulusBits} to ${policy.maxModulusBits} bits (got ${modulusLength})`);
  }
  if (publicExponent === undefined || !policy.publicExponents.includes(publicExponent)) {
    throw invalid(`the RSA public exponent must be ${policy.publicExponents.join(' or ')}`);
  }
  const spkiDer = Buffer.from(forge.asn1.toDer(spki).getBytes(), 'binary');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch {
    throw invalid('the public key cannot be read');
  }
  if (key.asymmetricKeyType !== 'rsa') throw invalid('the public key must be RSA');

  if (bits.type !== forge.asn1.Type.BITSTRING || typeof bits.value !== 'string') throw invalid('no signature');
  const sigBits = Buffer.from(bits.value, 'binary');
  if (sigBits[0] !== 0) throw invalid('the signature is not a whole number of bytes');
  const signature = sigBits.subarray(1);
  if (signature.length !== Math.ceil(modulusLength / 8)) {
    throw invalid(`the signature is ${signature.length} bytes, its ${modulusLength}-bit key signs ${Math.ceil(modulusLength / 8)}`);
  }
  let forgeKey: forge.pki.rsa.PublicKey;
  try {
    forgeKey = forge.pki.publicKeyFromAsn1(forge.asn1.fromDer(spkiDer.toString('binary'))) as forge.pki.rsa.PublicKey;
  } catch {
    throw invalid('the public key cannot be read as RSA');
  }
  return { key, forgeKey, signedBytes: Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary'), signature, digest };
}

const RSA_ENCRYPTION_OID = '1.2.840.113549.1.1.1';

/**
 * The modulus size and public exponent of an RSA SubjectPublicKeyInfo, from its DER (bounded: the
 * whole CSR is at most CSR_MAX_DER_BYTES). Any other key type is refused: the agents make RSA keys.
 * `publicExponent` is undefined when it is longer than 8 bytes (no policy allows one that long).
 */
function rsaNumbers(spki: forge.asn1.Asn1): { modulusLength: number; publicExponent: bigint | undefined } {
  const [algorithm, keyBits] = children(spki, 2, 'SubjectPublicKeyInfo') as [forge.asn1.Asn1, forge.asn1.Asn1];
  const oid = children(algorithm, 1, 'key algorithm')[0]!;
  if (oid.type !== forge.asn1.Type.OID || typeof oid.value !== 'string') throw invalid('no key algorithm');
  if (forge.asn1.derToOid(oid.value) !== RSA_ENCRYPTION_OID) throw invalid('the public key must be RSA');
  if (keyBits.type !== forge.asn1.Type.BITSTRING || typeof keyBits.value !== 'string' || keyBits.value.charCodeAt(0) !== 0) throw invalid('malformed RSA public key');
  let rsa: forge.asn1.Asn1;
  try {
    rsa = forge.asn1.fromDer(keyBits.value.slice(1), true);
  } catch {
    throw invalid('malformed RSA public key');
  }
  const [n, e] = children(rsa, 2, 'RSA public key') as [forge.asn1.Asn1, forge.asn1.Asn1];
  if (n.type !== forge.asn1.Type.INTEGER || e.type !== forge.asn1.Type.INTEGER || typeof n.value !== 'string' || typeof e.value !== 'string') {
    throw invalid('malformed RSA public key');
  }
  const mod = Buffer.from(n.value, 'binary');
  let i = 0;
  while (i < mod.length && mod[i] === 0) i++;
  const modulusLength = i === mod.length ? 0 : (mod.length - i - 1) * 8 + (32 - Math.clz32(mod[i]!));
  const exp = Buffer.from(e.value, 'binary');
  const publicExponent = exp.length <= 8 ? BigInt(`0x${exp.toString('hex') || '0'}`) : undefined;
  return { modulusLength, publicExponent };
}

/** The first `n` children of a constructed SEQUENCE (at least `n`), or a refusal naming it. */
function children(node: forge.asn1.Asn1, n: number, what: string): forge.asn1.Asn1[] {
  if (node.type !== forge.asn1.Type.SEQUENCE || !Array.isArray(node.value) || node.value.length < n) throw invalid(`malformed ${what}`);
  const out = node.value.slice(0, n);
  if (what === 'CertificationRequest' && node.value.length !== 3) throw invalid(`malformed ${what}`);
  return out;
}
