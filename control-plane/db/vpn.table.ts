export interface VpnNodesTable {
  agent_id: string;
  aid: string;
  cid: string;
  nid: string;
  /** Host number inside 172.24.0.0/16 (see control-plane/vpn/vpn.addresses.ts). */
  wg0_index: number;
  /** Host number inside 172.24.200.0/21 (nodes: the first /24). */
  wg1_index: number;
  /** Null until the node registers its keys (its first VPN sync). */
  wg0_public_key: string | null;
  wg1_public_key: string | null;
  wg0_port: number | null;
  wg1_port: number | null;
  endpoint_host: string | null;
  created_at: number;
  updated_at: number;
}

export interface VpnUsersTable {
  id: string;
  aid: string;
  cid: string;
  name: string;
  /** Host number inside 172.24.200.0/21 (users: above the nodes' /24). */
  wg1_index: number;
  /** The user's WireGuard public key; the private key is never stored. */
  public_key: string;
  created_at: number;
  revoked_at: number | null;
}
