/** The VPN part of every heartbeat: public state of wg0 and wg1 read with `wg show <if> dump` (never the private key). */
import type { Runner } from '../process/run.ts';
import type { NetworkConfig } from '../config/node.config.ts';
import { parseWgDump } from './wireguard.render.ts';

const MIB = 1024 * 1024;

/**
 * `forHeartbeat`: the form sent to the control plane, which changes only when something happens
 * (heartbeats carry it only when it changed): the last handshake as a time rather than an age, and
 * transfer counters in whole MiB.
 */
export async function collectVpnState(net: NetworkConfig, run: Runner, nowSeconds = Date.now() / 1000, forHeartbeat = false): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const role of ['wg0', 'wg1'] as const) {
    const ifname = net[role].interface;
    const r = await run('wg', ['show', ifname, 'dump'], { timeoutMs: 5000 });
    const dump = r.ok ? parseWgDump(r.stdout) : undefined;
    if (!dump) {
      out[role] = { interface: ifname, up: false };
      continue;
    }
    out[role] = {
      interface: ifname,
      up: true,
      publicKey: dump.publicKey,
      listenPort: dump.listenPort,
      // In a stable order (wg lists peers in its hash-table order), so an unchanged mesh compares equal.
      peers: [...dump.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)).map((p) => ({
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        ...(forHeartbeat
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
