/**
 * The fetch policy's I/O: the real path of a file:// source, the addresses a host name resolves
 * to now. The decisions are in fetch-policy.plan.ts; git then connects only to the address
 * checked here (see fetchConfig).
 */
import { realpathSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { addressesAllowed, classifyUrl, fileAllowed, type FetchPolicy, type FetchRefusal, type UrlTarget } from './fetch-policy.plan.ts';

export type CheckedSource =
  | { ok: true; target: UrlTarget; /** the address git is pinned to (remote, by name) */ pinned?: string; /** what git is given as the URL */ gitUrl: string }
  | { ok: false; reason: FetchRefusal; detail: string };

const DNS_TIMEOUT_MS = 5_000;

/** A policy that allows everything (the CLI validating a URL on its user's own machine). */
export const OPEN_POLICY: FetchPolicy = { allowHttp: true, allowPrivateAddresses: true, fileRoots: ['/'], deniedPaths: [] };

/** Real paths of the roots (a root that does not exist is kept as given: nothing is below it). */
export function realRoots(dirs: readonly string[]): string[] {
  return dirs.map((d) => {
    try {
      return realpathSync(d);
    } catch {
      return d;
    }
  });
}

export async function checkSource(url: string, policy: FetchPolicy): Promise<CheckedSource> {
  const c = classifyUrl(url, policy);
  if (!c.ok) return c;
  const t = c.target;
  if (t.kind === 'file') {
    let real: string;
    try {
      real = realpathSync(t.path);
    } catch (err) {
      return { ok: false, reason: 'file_root', detail: `${t.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
    if (!fileAllowed(real, policy)) return { ok: false, reason: 'file_root', detail: `${real} is not below an allowed file root` };
    // git gets the real path: a link swapped after this check cannot lead it elsewhere.
    return { ok: true, target: { kind: 'file', path: real }, gitUrl: `file://${real}` };
  }
  let addresses: string[];
  if (t.literal) addresses = [t.host];
  else {
    try {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('DNS lookup timed out')), DNS_TIMEOUT_MS);
      });
      try {
        addresses = (await Promise.race([lookup(t.host, { all: true, verbatim: true }), timeout])).map((a) => a.address);
      } finally {
        clearTimeout(timer);
      }
    } catch (err) {
      return { ok: false, reason: 'dns', detail: `${t.host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
  }
  const a = addressesAllowed(addresses, policy);
  if (!a.ok) return { ok: false, reason: 'private_address', detail: `${t.host}: ${a.detail}` };
  // git gets the URL as it was parsed here, so its host is the one checked (and pinned).
  return { ok: true, target: t, ...(t.literal ? {} : { pinned: addresses[0]! }), gitUrl: new URL(url).href };
}
