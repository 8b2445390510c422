/** shared_secrets (migration 0011): what every replica serves alike. */
export interface SharedSecretsTable {
  name: string;
  /** JSON text; a CA key inside is encrypted (pki/shared-ca.ts). */
  value: string;
  version: number;
  updated_at: number;
}

/** rate_limits (migration 0014): counters the replicas share on PostgreSQL (limits.repository.ts). */
export interface RateLimitsTable {
  key: string;
  /** When the key's current window opened (epoch ms, the database's clock). */
  window_start: number;
  count: number;
}
