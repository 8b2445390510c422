/**
 * When a PEM certificate expires, and whether it is time to renew (last third of its life):
 * node:crypto only, so a daemon that checks its certificate every hour does not load node-forge
 * (common/csr.ts, needed only to make a request).
 */
import { X509Certificate } from 'node:crypto';

export function certificateTimes(certPem: string): { notBefore: Date; notAfter: Date } {
  const x = new X509Certificate(certPem);
  return { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) };
}

export function shouldRenew(certPem: string, now = Date.now(), fraction = 1 / 3): boolean {
  const { notBefore, notAfter } = certificateTimes(certPem);
  const life = notAfter.getTime() - notBefore.getTime();
  return notAfter.getTime() - now < life * fraction;
}
