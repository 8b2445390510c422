/** Browser sessions (the web console): only the SHA-256 of the cookie's secret is stored. */
export interface SessionsTable {
  id_hash: string;
  aid: string;
  /** The API token the session was made from: revoking it ends the session. */
  key_id: string;
  created_at: number;
  /** Last request made with the session (updated at most once a minute), for the idle expiry. */
  last_seen_at: number;
  /** Absolute expiry. */
  expires_at: number;
}
