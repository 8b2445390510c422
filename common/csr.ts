/**
 * Agent-side key material: the private key is generated here, on the agent, and never leaves it;
 * only a certificate signing request travels to the control plane.
 */
import { generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
}

/**
 * The keys agents make, and so the only keys the control plane certifies: RSA, 2048 bits by
 * default, public exponent 65537 (checked before any signature work: control-plane/pki/csr-check.ts).
 */
export const AGENT_KEY_POLICY = {
  type: 'rsa',
  modulusBits: 2048,
  minModulusBits: 2048,
  maxModulusBits: 4096,
  publicExponents: [65537n] as readonly bigint[],
} as const;

/** RSA-2048 through OpenSSL (fast, native); node-forge only signs the request. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: AGENT_KEY_POLICY.modulusBits,
    publicExponent: Number(AGENT_KEY_POLICY.publicExponents[0]),
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export function createCsr(keys: KeyPair, commonName: string): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: commonName }]);
  csr.sign(forge.pki.privateKeyFromPem(keys.privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** When a PEM certificate expires, and whether it is time to renew (node:crypto only, in their own module). */
export { certificateTimes, shouldRenew } from './certificate-times.ts';
