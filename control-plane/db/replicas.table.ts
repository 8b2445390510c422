/** shared_secrets (migration 0011): what every replica serves alike. */
export interface SharedSecretsTable {
  name: string;
  /** JSON text; a CA key inside is encrypted (pki/shared-ca.ts). */
  value: string;
  version: number;
  updated_at: number;
}
