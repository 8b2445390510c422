/** Certificate renewal: a new CSR signed with the node's existing key (the key never moves), the new certificate written atomically. */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { certificateTimes, shouldRenew } from '../../common/certificate-times.ts';
import { writeFileAtomic } from '../../common/files.ts';
import type { AgentClient } from '../../common/agent/agent-client.ts';
import type { NodeConfig } from '../config/node.config.ts';

export function readCredentials(c: NodeConfig) {
  return { certPem: readFileSync(c.certFile, 'utf8'), keyPem: readFileSync(c.keyFile, 'utf8'), caPem: readFileSync(c.caFile, 'utf8') };
}

export async function renewCertificate(c: NodeConfig, client: AgentClient): Promise<{ expiresAt: string }> {
  const keyPem = readFileSync(c.keyFile, 'utf8');
  const publicKeyPem = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }).toString();
  // node-forge (through csr.ts) only when a request is made: the idle daemon never loads it.
  const { createCsr } = await import('../../common/csr.ts');
  const res = await client.renew(createCsr({ privateKeyPem: keyPem, publicKeyPem }, 'tether-agent'));
  writeFileAtomic(c.certFile, res.certificate, 0o644);
  client.setCertificate(res.certificate);
  return { expiresAt: res.expiresAt };
}

export function certificateDue(c: NodeConfig, now = Date.now()): { due: boolean; notAfter: Date } {
  const pem = readFileSync(c.certFile, 'utf8');
  return { due: shouldRenew(pem, now), notAfter: certificateTimes(pem).notAfter };
}
