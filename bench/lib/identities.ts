/**
 * Simulated agents' identities, issued through the real flow: a cluster per agent, a one-time
 * bootstrap token from the admin API, and POST /v1/bootstrap with a CSR. Issued once and cached
 * under BENCH_CACHE/identities/<CA fingerprint>/, so reruns against the same CA reuse them.
 * A small pool of RSA keys is shared between simulated agents (keygen is the agent's cost, not
 * the control plane's); every agent still has its own certificate, serial and agent id.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { generateKeyPair, createCsr } from '../../common/csr.ts';
import { bootstrapResponseSchema } from '../../common/wire.ts';
import type { HttpClient } from '../../common/http-client.ts';
import { HttpError } from '../../common/http-client.ts';
import { BENCH_CACHE } from './util.ts';

export const KEY_POOL = 16;

export interface Identity {
  i: number;
  agentId: string;
  cid: string;
  key: number;
  certPem: string;
  notAfter: number;
}

export const clusterOf = (i: number) => `b${String(i).padStart(6, '0')}`;

export function identityDir(caPem: string): string {
  const fp = createHash('sha256').update(caPem).digest('hex').slice(0, 16);
  return join(BENCH_CACHE, 'identities', fp);
}

export function loadKeys(dir: string): { privateKeyPem: string; publicKeyPem: string; csr: string }[] {
  mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
  const keys = [];
  for (let k = 0; k < KEY_POOL; k++) {
    const f = join(dir, 'keys', `k${k}.json`);
    if (!existsSync(f)) {
      const kp = generateKeyPair();
      writeFileSync(f, JSON.stringify({ ...kp, csr: createCsr(kp, 'tether-agent') }), { mode: 0o600 });
    }
    keys.push(JSON.parse(readFileSync(f, 'utf8')) as { privateKeyPem: string; publicKeyPem: string; csr: string });
  }
  return keys;
}

export function loadIdentities(dir: string): Map<number, Identity> {
  const f = join(dir, 'agents.jsonl');
  const m = new Map<number, Identity>();
  if (!existsSync(f)) return m;
  const soon = Date.now() + 86400_000;
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      const id = JSON.parse(line) as Identity;
      if (id.notAfter > soon) m.set(id.i, id);
    } catch {
      /* a torn last line */
    }
  }
  return m;
}

/** Makes sure identities 0..count-1 exist; returns them in order. */
export async function ensureIdentities(o: { url: string; caPem: string; admin: HttpClient; count: number; concurrency?: number; log?: (s: string) => void }): Promise<Identity[]> {
  const dir = identityDir(o.caPem);
  const keys = loadKeys(dir);
  const have = loadIdentities(dir);
  const missing: number[] = [];
  for (let i = 0; i < o.count; i++) if (!have.has(i)) missing.push(i);
  if (missing.length) {
    const log = o.log ?? (() => {});
    log(`issuing ${missing.length} agent identities through the bootstrap flow (cached in ${dir}) ...`);
    const { HttpClient } = await import('../../common/http-client.ts');
    const boot = new HttpClient({ baseUrl: o.url, ca: o.caPem, timeoutMs: 60_000 });
    const started = Date.now();
    let done = 0;
    let next = 0;
    const worker = async () => {
      while (next < missing.length) {
        const i = missing[next++]!;
        const cid = clusterOf(i);
        try {
          await o.admin.request('POST', '/v1/clusters', { cid });
        } catch (err) {
          if (!(err instanceof HttpError && err.status === 409)) throw err;
        }
        const { token } = (await o.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body;
        const key = i % KEY_POOL;
        const res = bootstrapResponseSchema.parse((await boot.request('POST', '/v1/bootstrap', { token, csr: keys[key]!.csr })).body);
        const id: Identity = { i, agentId: res.agentId, cid, key, certPem: res.certificate, notAfter: new X509Certificate(res.certificate).validToDate.getTime() };
        appendFileSync(join(dir, 'agents.jsonl'), `${JSON.stringify(id)}\n`);
        have.set(i, id);
        if (++done % 500 === 0) log(`  ${done}/${missing.length} issued (${Math.round(done / ((Date.now() - started) / 1000))}/s)`);
      }
    };
    try {
      await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
    } finally {
      boot.close();
    }
    log(`issued ${missing.length} identities in ${Math.round((Date.now() - started) / 1000)} s`);
  }
  return Array.from({ length: o.count }, (_, i) => have.get(i)!);
}
