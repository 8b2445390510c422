import type { AgentRole } from '../../common/wire.ts';

export interface AgentsTable {
  id: string;
  aid: string;
  cid: string;
  role: AgentRole;
  /** Node id for node agents; null for cluster agents. */
  nid: string | null;
  control_plane: number;
  created_at: number;
  revoked_at: number | null;
  last_heartbeat_at: number | null;
  heartbeats: number;
  version: string | null;
  /** JSON of the last heartbeat's metrics. */
  metrics: string | null;
  /** JSON of the last heartbeat's VPN state. */
  vpn: string | null;
}

export interface CertificatesTable {
  /** Upper-case hex, as node:tls reports it. */
  serial: string;
  agent_id: string;
  not_before: number;
  not_after: number;
  revoked_at: number | null;
  created_at: number;
}
