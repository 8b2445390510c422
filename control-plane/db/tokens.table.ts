import type { AgentRole } from '../../common/wire.ts';

/** One-time agent bootstrap tokens. Only the SHA-256 of the secret is stored. */
export interface BootstrapTokensTable {
  id: string;
  aid: string;
  cid: string;
  role: AgentRole;
  control_plane: number;
  secret_hash: string;
  expires_at: number;
  used_at: number | null;
  used_by_agent: string | null;
  created_at: number;
}

/** Personal access tokens for the admin API: tether_pat_<key_id>.<secret>. */
export interface ApiTokensTable {
  key_id: string;
  aid: string;
  name: string;
  secret_hash: string;
  expires_at: number;
  revoked_at: number | null;
  created_at: number;
}
