/**
 * How a client command reaches the control plane: where (flags, env, stored credentials, the local
 * `data/` folder of `tether server`), the CA it trusts (checked to be a certificate), and what a
 * failure means to the person at the terminal (a hint instead of a bare TLS or socket code).
 * Imports nothing heavy: every client command loads this, and the CLI answers in ~100 ms.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { HttpClient } from '../../common/http-client.ts';
import { TetherError, errorMessage } from '../../common/errors.ts';
import { readCredentials } from './credentials.ts';

export class UsageError extends Error {}

export interface GlobalOpts {
  url?: string;
  apiKey?: string;
  caFile?: string;
}

/** `tether server`'s defaults, used when nothing else says where the control plane is. */
export const LOCAL = { url: 'https://127.0.0.1:8443', caFile: 'data/ca.crt', tokenFile: 'data/admin-token' };

export interface Target {
  url: string;
  caFile?: string;
  apiKey?: string;
  /** The token comes from (or would come from) `data/admin-token` of a local server. */
  localToken: boolean;
}

export function resolveTarget(g: GlobalOpts): Target {
  const stored = readCredentials();
  // An empty variable counts as unset (`TETHER_API_KEY= tether …`).
  const env = (name: string) => process.env[name] || undefined;
  const url = g.url ?? env('TETHER_URL') ?? stored.url ?? LOCAL.url;
  const caFile = g.caFile ?? env('TETHER_CA_FILE') ?? stored.caFile ?? (existsSync(LOCAL.caFile) ? LOCAL.caFile : undefined);
  const apiKey = g.apiKey ?? env('TETHER_API_KEY') ?? stored.apiKey;
  if (apiKey) return { url, caFile, apiKey, localToken: false };
  const local = existsSync(LOCAL.tokenFile) ? readFileSync(LOCAL.tokenFile, 'utf8').trim() : undefined;
  return { url, caFile, apiKey: local || undefined, localToken: true };
}

/** Reads a CA file and checks it holds a PEM certificate (not a key, a CSR or anything else). */
export function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the CA file ${file}: ${errorMessage(err)}`);
  }
  try {
    new X509Certificate(pem);
  } catch {
    throw new UsageError(`the CA file ${resolve(file)} is not a PEM certificate; pass the control plane's CA, the ca.crt in its data folder (--ca-file, TETHER_CA_FILE)`);
  }
  return pem;
}

export function makeClient(t: Target): HttpClient {
  if (!t.apiKey) {
    throw new UsageError(
      t.localToken && !existsSync(LOCAL.tokenFile) && existsSync('data')
        ? `no API token yet: ${LOCAL.tokenFile} is written when the control plane first starts; run \`tether wait\``
        : 'no API token: set TETHER_API_KEY, pass --api-key, or run `tether login`',
    );
  }
  const ca = t.caFile ? readCa(t.caFile) : undefined;
  try {
    return new HttpClient({ baseUrl: t.url, ca, bearerToken: t.apiKey, userAgent: 'tether-cli' });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

const TLS_TRUST_CODES = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_SIGNATURE_FAILURE']);

/** The socket or TLS code under a transport error (ECONNREFUSED, SELF_SIGNED_CERT_IN_CHAIN, …). */
export function transportCode(err: unknown): string | undefined {
  if (!(err instanceof TetherError) || err.code !== 'transport_error') return undefined;
  const c = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** What a transport failure means and what to do about it; undefined when there is nothing to add. */
export function explainTransport(err: unknown, t: Pick<Target, 'url' | 'caFile'>): string | undefined {
  const code = transportCode(err);
  if (!code) return undefined;
  if (code === 'ECONNREFUSED') return `the control plane at ${t.url} is not up yet (connection refused): start it with \`tether server\` (\`npm start\`), or wait for it with \`tether wait\``;
  if (TLS_TRUST_CODES.has(code)) {
    return t.caFile
      ? `the control plane at ${t.url} presented a certificate not signed by the CA in ${resolve(t.caFile)} (${code}): pass the ca.crt from that control plane's data folder (--ca-file, TETHER_CA_FILE)`
      : `the control plane at ${t.url} presented a certificate this machine does not trust (${code}): pass its CA, the ca.crt in its data folder (--ca-file, TETHER_CA_FILE)`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the control plane's certificate does not name the host in ${t.url} (${code}): use a name it was issued for, or restart it with --san <name>`;
  return undefined;
}

/**
 * Every item of a paginated list (the server answers at most 200 per page with `nextCursor`):
 * the CLI's lists show them all, as they did before the lists were paginated.
 */
export async function allPages<T>(call: <R>(method: string, path: string) => Promise<R>, path: string, key: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10_000; pages++) {
    const sep = path.includes('?') ? '&' : '?';
    const body: Record<string, unknown> = await call('GET', cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...((body[key] as T[] | undefined) ?? []));
    cursor = typeof body.nextCursor === 'string' ? body.nextCursor : null;
    if (!cursor) break;
  }
  return items;
}
