/**
 * Pure rendering for WireGuard: the `wg syncconf` file of an interface, and the `ip` commands that
 * bring its address, state and routes to what they should be (from what they are now).
 */
import type { VpnConfig } from '../../common/vpn.ts';

export interface WgPeer {
  publicKey: string;
  endpoint?: string | null;
  allowedIps: string[];
  persistentKeepalive?: number;
}

export interface WgInterfaceConfig {
  privateKey: string;
  listenPort: number;
  peers: WgPeer[];
}

/**
 * The wg(8) configuration format (not wg-quick's: no Address/DNS). Peers are sorted by public key
 * so the same desired state always renders the same bytes.
 */
export function renderWgConf(c: WgInterfaceConfig): string {
  const lines = ['[Interface]', `PrivateKey = ${c.privateKey}`, `ListenPort = ${c.listenPort}`];
  for (const p of [...c.peers].sort((a, b) => a.publicKey.localeCompare(b.publicKey))) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepalive) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return `${lines.join('\n')}\n`;
}

/** wg0: every other node of the cluster, reachable at its endpoint; each owns its /32. */
export function meshPeers(cfg: VpnConfig): WgPeer[] {
  return cfg.wg0.peers.map((p) => ({ publicKey: p.publicKey, endpoint: p.endpoint, allowedIps: p.allowedIps, persistentKeepalive: 25 }));
}

/** wg1: the users (they dial in; no endpoint); each user is its /32 only, so users never reach each other through a node's peers list. */
export function userPeers(cfg: VpnConfig): WgPeer[] {
  return cfg.wg1.peers.map((p) => ({ publicKey: p.publicKey, allowedIps: p.allowedIps }));
}

export interface LinkState {
  exists: boolean;
  up: boolean;
  /** CIDRs assigned to the interface now (e.g. 172.24.0.2/32). */
  addresses: string[];
  /** Destinations routed through the interface now (e.g. 172.24.0.0/16). */
  routes: string[];
}

export interface DesiredLink {
  ifname: string;
  address: string;
  routes: string[];
}

/** The `ip` argument lists that turn `now` into `want`; empty when nothing differs. */
export function planLink(now: LinkState, want: DesiredLink): string[][] {
  const cmds: string[][] = [];
  for (const a of now.addresses) if (a !== want.address) cmds.push(['address', 'del', a, 'dev', want.ifname]);
  if (!now.addresses.includes(want.address)) cmds.push(['address', 'add', want.address, 'dev', want.ifname]);
  if (!now.up) cmds.push(['link', 'set', 'dev', want.ifname, 'up']);
  for (const r of want.routes) if (!now.routes.includes(r)) cmds.push(['route', 'replace', r, 'dev', want.ifname]);
  return cmds;
}

/** Reads `ip -j address show dev X` and `ip -j route show dev X` output. */
export function parseLinkState(addrJson: string, routeJson: string): LinkState {
  const links = JSON.parse(addrJson || '[]') as { flags?: string[]; operstate?: string; addr_info?: { family: string; local: string; prefixlen: number }[] }[];
  const link = links[0];
  if (!link) return { exists: false, up: false, addresses: [], routes: [] };
  const routes = (JSON.parse(routeJson || '[]') as { dst: string }[]).map((r) => (r.dst.includes('/') || r.dst === 'default' ? r.dst : `${r.dst}/32`));
  return {
    exists: true,
    up: (link.flags ?? []).includes('UP'),
    addresses: (link.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    routes,
  };
}

export interface WgDumpInterface {
  publicKey: string;
  listenPort: number;
  peers: { publicKey: string; endpoint: string | null; allowedIps: string[]; latestHandshake: number; rxBytes: number; txBytes: number }[];
}

/**
 * Parses `wg show <if> dump`. The first line holds the interface's private key: it is dropped
 * here and never leaves this function.
 */
export function parseWgDump(text: string): WgDumpInterface | undefined {
  const [head, ...rest] = text.split('\n').filter((l) => l.length > 0);
  if (!head) return undefined;
  const h = head.split('\t');
  return {
    publicKey: h[1] ?? '',
    listenPort: Number(h[2]),
    peers: rest.map((l) => {
      const f = l.split('\t');
      return {
        publicKey: f[0] ?? '',
        endpoint: f[2] && f[2] !== '(none)' ? f[2] : null,
        allowedIps: f[3] && f[3] !== '(none)' ? f[3].split(',') : [],
        latestHandshake: Number(f[4] ?? 0),
        rxBytes: Number(f[5] ?? 0),
        txBytes: Number(f[6] ?? 0),
      };
    }),
  };
}
