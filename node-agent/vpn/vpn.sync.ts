/**
 * `vpn-sync`: makes sure this node has its WireGuard keys, tells the control plane its public keys
 * and endpoint (which answers with this node's addresses and the cluster's peers), then loads the
 * nftables rules that keep wg1 hub-and-spoke (before wg1 has peers), renders and applies wg0 (full
 * mesh of the cluster's nodes) and wg1 (the users, hub-and-spoke).
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.ts';
import type { NodeConfig } from '../config/node.config.ts';
import type { Runner } from '../process/run.ts';
import { applyFirewall, type FirewallResult } from './firewall.apply.ts';
import { applyInterface } from './wireguard.apply.ts';
import { ensureWgKey } from './wireguard.keys.ts';
import { meshPeers, renderWgConf, userPeers } from './wireguard.render.ts';
import { vpnConfigSchema, type VpnConfig, type VpnRegister } from '../../common/vpn.ts';

/** What the sync needs from the agent client (an AgentClient satisfies it). */
export interface VpnApi {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
}

export interface VpnSyncResult {
  wg0: { interface: string; address: string; peers: number; created: string | null; linkChanges: number };
  wg1: { interface: string; address: string; peers: number; created: string | null; linkChanges: number };
  firewall: FirewallResult;
}

export const wireguardDir = (c: NodeConfig) => join(c.stateDir, 'wireguard');

/** The local address this host uses to reach the control plane (no packet is sent). */
export async function localAddressToward(serverUrl: string): Promise<string> {
  const u = new URL(serverUrl);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const { address, family } = await lookup(host);
  const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(Number(u.port || 443), address, () => resolve());
    });
    return sock.address().address;
  } finally {
    sock.close();
  }
}

export async function registerVpn(c: NodeConfig, api: VpnApi, run: Runner): Promise<{ config: VpnConfig; keys: { wg0: string; wg1: string } }> {
  const dir = wireguardDir(c);
  const wg0 = await ensureWgKey(join(dir, 'wg0.key'), run);
  const wg1 = await ensureWgKey(join(dir, 'wg1.key'), run);
  const body: VpnRegister = {
    wg0: { publicKey: wg0.publicKey, listenPort: c.network.wg0.listenPort },
    wg1: { publicKey: wg1.publicKey, listenPort: c.network.wg1.listenPort },
    endpointHost: c.network.endpointAddress ?? (await localAddressToward(c.server)),
  };
  const config = vpnConfigSchema.parse(await api.request('PUT', '/v1/agent/vpn/node', body));
  return { config, keys: { wg0: wg0.privateKey, wg1: wg1.privateKey } };
}

export async function syncVpn(c: NodeConfig, api: VpnApi, run: Runner, log: Logger): Promise<VpnSyncResult> {
  const { config, keys } = await registerVpn(c, api, run);
  const dir = wireguardDir(c);
  const net = c.network;
  // The rules first: wg1 never forwards between users, not even for the moment it takes to apply.
  const firewall = await applyFirewall(run, { wg1Interface: net.wg1.interface, wg1Network: config.wg1.network }, log);
  const wg0 = await applyInterface({
    link: { ifname: net.wg0.interface, address: `${config.wg0.address}/32`, routes: [config.wg0.network] },
    conf: renderWgConf({ privateKey: keys.wg0, listenPort: net.wg0.listenPort, peers: meshPeers(config) }),
    confPath: join(dir, `${net.wg0.interface}.conf`),
    wireguardGo: net.wireguardGo,
    run,
    log,
  });
  const wg1 = await applyInterface({
    link: { ifname: net.wg1.interface, address: `${config.wg1.address}/32`, routes: [config.wg1.network] },
    conf: renderWgConf({ privateKey: keys.wg1, listenPort: net.wg1.listenPort, peers: userPeers(config) }),
    confPath: join(dir, `${net.wg1.interface}.conf`),
    wireguardGo: net.wireguardGo,
    run,
    log,
  });
  const result: VpnSyncResult = {
    wg0: { interface: net.wg0.interface, address: config.wg0.address, peers: config.wg0.peers.length, created: wg0.created, linkChanges: wg0.linkChanges.length },
    wg1: { interface: net.wg1.interface, address: config.wg1.address, peers: config.wg1.peers.length, created: wg1.created, linkChanges: wg1.linkChanges.length },
    firewall,
  };
  log.info({ vpn: result }, 'VPN synchronised');
  return result;
}
