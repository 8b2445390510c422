/**
 * The control plane's fetch policy for bundle sources, as pure decisions: which URLs it may fetch
 * (https by default; http when the operator allows it; file:// only below the roots the operator
 * lists; ssh never: the server holds no ssh keys and gives git none), which resolved addresses
 * git may connect to (no private, loopback, link-local or otherwise non-public address unless the
 * operator allows them), and the git configuration and environment that pin git to exactly what
 * was checked (one protocol, no redirects, the checked address, no configuration of the server's
 * user, the source's own credentials only). The executor (fetch-policy.ts) does the I/O.
 */
import { BlockList, isIP } from 'node:net';
import { isAbsolute, relative, sep } from 'node:path';

export interface FetchPolicy {
  /** http:// sources (plain text: anyone on the path can change what is deployed). */
  allowHttp: boolean;
  /** Private, loopback, link-local and other non-public addresses (an internal git server). */
  allowPrivateAddresses: boolean;
  /** Real paths of the folders file:// sources may be below (empty: no file:// at all). */
  fileRoots: readonly string[];
  /** Real paths never fetched from even below a root (the server's data, its bundle cache). */
  deniedPaths: readonly string[];
}

/** Why a source was not fetched; only ever logged, never shown to the tenant. */
export type FetchRefusal = 'scheme' | 'url' | 'file_root' | 'private_address' | 'dns' | 'git' | 'no_such_ref' | 'timeout';

export type UrlTarget =
  | { kind: 'file'; path: string }
  | { kind: 'remote'; scheme: 'https' | 'http'; host: string; port: number; literal: boolean };

export type UrlDecision = { ok: true; target: UrlTarget } | { ok: false; reason: FetchRefusal; detail: string };

/** What the URL's shape alone allows (no I/O): the scheme, credentials in the URL, the host. */
export function classifyUrl(url: string, policy: FetchPolicy): UrlDecision {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // scp-like user@host:path (ssh) and anything unparsable
    return { ok: false, reason: 'scheme', detail: 'not a URL with a scheme (scp-like ssh URLs are not fetched)' };
  }
  if (u.username !== '' || u.password !== '') return { ok: false, reason: 'url', detail: 'credentials in the URL' };
  if (u.search !== '' || u.hash !== '') return { ok: false, reason: 'url', detail: 'a query or fragment in the URL' };
  switch (u.protocol) {
    case 'file:': {
      if (u.host !== '') return { ok: false, reason: 'url', detail: `file:// with a host (${u.host})` };
      let path: string;
      try {
        path = decodeURIComponent(u.pathname);
      } catch {
        return { ok: false, reason: 'url', detail: 'undecodable path' };
      }
      if (path.includes('\0') || !isAbsolute(path)) return { ok: false, reason: 'url', detail: 'not an absolute path' };
      if (policy.fileRoots.length === 0) return { ok: false, reason: 'file_root', detail: 'file:// is not allowed (no --allow-file-root)' };
      return { ok: true, target: { kind: 'file', path } };
    }
    case 'https:':
    case 'http:': {
      const scheme = u.protocol === 'https:' ? 'https' : 'http';
      if (scheme === 'http' && !policy.allowHttp) return { ok: false, reason: 'scheme', detail: 'http:// is not allowed (no --allow-http)' };
      const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
      if (host === '') return { ok: false, reason: 'url', detail: 'no host' };
      const port = u.port === '' ? (scheme === 'https' ? 443 : 80) : Number(u.port);
      return { ok: true, target: { kind: 'remote', scheme, host, port, literal: isIP(host) !== 0 } };
    }
    default:
      return { ok: false, reason: 'scheme', detail: `scheme ${u.protocol.replace(/:$/, '')} is not fetched` };
  }
}

/** True when `real` (a real path) is a root or below one, and not in or below a denied path. */
export function fileAllowed(real: string, policy: FetchPolicy): boolean {
  const within = (root: string) => {
    const rel = relative(root, real);
    return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
  };
  return policy.fileRoots.some(within) && !policy.deniedPaths.some(within);
}

// Every range that is not globally reachable unicast (IANA special-purpose registries), plus the
// IPv6 forms that embed an IPv4 address (checked as that address).
const NON_PUBLIC_V4: [string, number][] = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
];
const NON_PUBLIC_V6: [string, number][] = [
  ['::', 128], ['::1', 128], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
];
const nonPublic = new BlockList();
for (const [a, p] of NON_PUBLIC_V4) nonPublic.addSubnet(a, p, 'ipv4');
for (const [a, p] of NON_PUBLIC_V6) nonPublic.addSubnet(a, p, 'ipv6');

/** The IPv4 address an IPv6 address carries (mapped ::ffff:a.b.c.d, compatible, NAT64, 6to4), if any. */
function embeddedV4(ip: string): string | undefined {
  const lower = ip.toLowerCase();
  const dotted = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  const sixToFour = /^2002:([0-9a-f]{1,4}):([0-9a-f]{1,4}):/.exec(lower);
  if (sixToFour) {
    const hi = parseInt(sixToFour[1]!, 16);
    const lo = parseInt(sixToFour[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return undefined;
}

/** True for a globally reachable unicast address; false for anything else, unparsable included. */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 4) return !nonPublic.check(ip, 'ipv4');
  const v4 = embeddedV4(ip);
  if (v4 !== undefined) return isIP(v4) === 4 && !nonPublic.check(v4, 'ipv4');
  return !nonPublic.check(ip, 'ipv6');
}

/** Every resolved address must pass (one bad answer refuses the host: DNS may hand either out). */
export function addressesAllowed(addresses: readonly string[], policy: FetchPolicy): { ok: true } | { ok: false; detail: string } {
  if (addresses.length === 0) return { ok: false, detail: 'no address' };
  if (policy.allowPrivateAddresses) return { ok: true };
  const bad = addresses.filter((a) => !isPublicAddress(a));
  return bad.length ? { ok: false, detail: `non-public address ${bad.join(', ')}` } : { ok: true };
}

export interface GitCredentials {
  username: string;
  password: string;
}

/**
 * The configuration git runs with for one fetch, as GIT_CONFIG_* environment entries (never on
 * the command line, where other users could read a credential): only the target's protocol, no
 * redirects, the host pinned to the address that was checked (so a second DNS answer cannot
 * point git elsewhere), and the source's own credentials as a header.
 */
export function fetchConfig(target: UrlTarget, pinned: string | undefined, credentials?: GitCredentials): [string, string][] {
  const c: [string, string][] = [['protocol.allow', 'never']];
  if (target.kind === 'file') {
    c.push(['protocol.file.allow', 'always']);
    return c;
  }
  c.push([`protocol.${target.scheme}.allow`, 'always'], ['http.followRedirects', 'false'], ['credential.helper', ''], ['http.emptyAuth', 'false']);
  if (pinned !== undefined && !target.literal) c.push(['http.curloptResolve', `${target.host}:${target.port}:${isIP(pinned) === 6 ? `[${pinned}]` : pinned}`]);
  if (credentials) c.push(['http.extraHeader', `Authorization: Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`]);
  return c;
}

/** The configuration for local work on the cache's own repositories (checkouts). */
export function localConfig(): [string, string][] {
  return [['protocol.allow', 'never'], ['protocol.file.allow', 'always']];
}

/**
 * git's whole environment: nothing of the server's user (no HOME, no SSH_AUTH_SOCK, no proxies,
 * no credentials), no system or global configuration, no prompts; `base` carries PATH and the
 * TLS trust settings only.
 */
export function gitEnvironment(base: { PATH?: string; SSL_CERT_FILE?: string; SSL_CERT_DIR?: string }, config: readonly [string, string][]): Record<string, string> {
  const env: Record<string, string> = {
    PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ATTR_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: '/bin/false',
    SSH_ASKPASS: '/bin/false',
    GIT_LFS_SKIP_SMUDGE: '1',
    GIT_NO_REPLACE_OBJECTS: '1',
    GIT_CONFIG_COUNT: String(config.length),
  };
  if (base.SSL_CERT_FILE) env.SSL_CERT_FILE = base.SSL_CERT_FILE;
  if (base.SSL_CERT_DIR) env.SSL_CERT_DIR = base.SSL_CERT_DIR;
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}
