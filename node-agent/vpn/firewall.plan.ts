/**
 * wg1 is hub and spoke: users reach nodes, never each other. WireGuard alone does not enforce it
 * on a node that forwards (Kubernetes nodes do): a user who routes another user's address through
 * a node would be forwarded to that user. This renders the node's own nftables table that forbids
 * it (pure; firewall.apply.ts loads it):
 *
 * - nothing that came in on wg1 is forwarded back out of wg1 (user → node → user);
 * - nothing forwarded out of wg1 comes from an address of the wg1 network (user → node → wg0 mesh
 *   → another node → user): a node's own traffic to a user is not forwarded, and replies of what
 *   users reach behind a node (a NodePort, a pod) come from that service's address, not wg1's.
 *
 * Everything else is left as it is (policy accept): users keep reaching the node itself and what
 * it serves. The table is this agent's alone (`inet tether_vpn`), replaced as a whole in one nft
 * transaction, so reloading it is idempotent and never touches other tables (kube-proxy, CNI,
 * the host's own firewall). A drop in any base chain is final, whatever other tables accept.
 */
export const FIREWALL_TABLE = 'tether_vpn';

export interface FirewallInput {
  /** The wg1 interface name (already validated: [A-Za-z0-9_.-]{1,15}). */
  wg1Interface: string;
  /** The wg1 network, e.g. 172.24.200.0/21. */
  wg1Network: string;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const CIDR4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** The nft script (for `nft -f -`): declare, delete and recreate the table in one transaction. */
export function renderFirewall(i: FirewallInput): string {
  if (!IFNAME_RE.test(i.wg1Interface)) throw new Error(`not an interface name: ${i.wg1Interface}`);
  const m = CIDR4_RE.exec(i.wg1Network);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) throw new Error(`not an IPv4 network: ${i.wg1Network}`);
  const wg1 = JSON.stringify(i.wg1Interface);
  return [
    `table inet ${FIREWALL_TABLE}`,
    `delete table inet ${FIREWALL_TABLE}`,
    `table inet ${FIREWALL_TABLE} {`,
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    `\t\tiifname ${wg1} oifname ${wg1} counter drop comment "wg1 users never reach each other through this node"`,
    `\t\toifname ${wg1} ip saddr ${i.wg1Network} counter drop comment "nor through the mesh"`,
    '\t}',
    '}',
    '',
  ].join('\n');
}
