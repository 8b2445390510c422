/**
 * The VPN part of every heartbeat: public state of wg0 and wg1. A userspace interface
 * (wireguard-go) is read through its UAPI socket (/var/run/wireguard/<if>.sock): no process per
 * heartbeat, and the private and preshared keys are skipped unread (wireguard.uapi.parse.ts); its
 * public key is computed from the agent's key file. A kernel interface (no socket, but
 * /sys/class/net/<if> exists) falls back to `wg show <if> dump`. No socket and no interface: down,
 * with no process either.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Runner } from '../process/run.ts';
import type { NetworkConfig } from '../config/node.config.ts';
import { parseWgDump } from './wireguard.render.ts';
import { readUapi } from './wireguard.uapi.ts';
import type { UapiPeer } from './wireguard.uapi.parse.ts';
import { publicKeyOfKeyFile } from './wireguard.keys.ts';

const MIB = 1024 * 1024;

/** A peer as the heartbeat reports it: the same shape from the UAPI socket and from `wg show dump`. */
type PeerState = UapiPeer;

export interface VpnStateOptions {
  nowSeconds?: number;
  /**
   * The form sent to the control plane, which changes only when something happens (heartbeats
   * carry it only when it changed): the last handshake as a time rather than an age, and transfer
   * counters in whole MiB.
   */
  forHeartbeat?: boolean;
  /** Where the agent keeps wg0.key and wg1.key (the interfaces' public keys are computed from them). */
  keyDir?: string;
  /** Where userspace interfaces have their UAPI sockets (default /var/run/wireguard). */
  socketDir?: string;
  /** Where the kernel lists interfaces (default /sys/class/net). */
  sysClassNet?: string;
}

/** One interface's public state, and how it was read ('uapi' | 'wg' | 'none'). */
export async function readInterface(ifname: string, role: 'wg0' | 'wg1', run: Runner, o: VpnStateOptions = {}): Promise<{ via: 'uapi' | 'wg' | 'none'; state?: { publicKey: string | null; listenPort: number; peers: PeerState[] } }> {
  const u = await readUapi(ifname, { socketDir: o.socketDir });
  if (u.ok) return { via: 'uapi', state: { publicKey: o.keyDir ? publicKeyOfKeyFile(join(o.keyDir, `${role}.key`)) : null, ...u.device } };
  if (!u.missing || !existsSync(join(o.sysClassNet ?? '/sys/class/net', ifname))) return { via: 'none' };
  // A kernel interface: wg reads it over netlink (and drops the private key in parseWgDump).
  const r = await run('wg', ['show', ifname, 'dump'], { timeoutMs: 5000 });
  const dump = r.ok ? parseWgDump(r.stdout) : undefined;
  return dump ? { via: 'wg', state: dump } : { via: 'none' };
}

export async function collectVpnState(net: NetworkConfig, run: Runner, o: VpnStateOptions = {}): Promise<Record<string, unknown>> {
  const nowSeconds = o.nowSeconds ?? Date.now() / 1000;
  const out: Record<string, unknown> = {};
  for (const role of ['wg0', 'wg1'] as const) {
    const ifname = net[role].interface;
    const { state } = await readInterface(ifname, role, run, o);
    if (!state) {
      out[role] = { interface: ifname, up: false };
      continue;
    }
    out[role] = {
      interface: ifname,
      up: true,
      publicKey: state.publicKey,
      listenPort: state.listenPort,
      // In a stable order (wg lists peers in its hash-table order), so an unchanged mesh compares equal.
      peers: [...state.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)).map((p) => ({
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        ...(o.forHeartbeat
          ? { allowedIps: [...p.allowedIps].sort(), latestHandshake: p.latestHandshake > 0 ? p.latestHandshake : null, rxMiB: Math.floor(p.rxBytes / MIB), txMiB: Math.floor(p.txBytes / MIB) }
          : {
              allowedIps: p.allowedIps,
              handshakeAgeSeconds: p.latestHandshake > 0 ? Math.max(0, Math.round(nowSeconds - p.latestHandshake)) : null,
              rxBytes: p.rxBytes,
              txBytes: p.txBytes,
            }),
      })),
    };
  }
  return out;
}
