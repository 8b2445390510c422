import type { Generated } from 'kysely';
import type { CommandType } from '../../common/specs.ts';
import type { CommandState } from '../../common/wire.ts';

export interface CommandsTable {
  id: Generated<number>;
  aid: string;
  cid: string;
  /** Set for node commands; null for commands any cluster agent of the cluster may claim. */
  nid: string | null;
  type: CommandType;
  /** JSON of the validated spec. Holds secret names, never values. */
  spec: string;
  state: CommandState;
  idempotency_key: string | null;
  timeout_seconds: number;
  max_attempts: number;
  attempts: number;
  /** The current claim's fencing token; results must carry it. */
  lease_id: string | null;
  lease_expires_at: number | null;
  claimed_by: string | null;
  created_at: number;
  claimed_at: number | null;
  finished_at: number | null;
  outputs: string | null;
  error: string | null;
  cancel_requested_at: number | null;
}

export interface CommandLogsTable {
  id: Generated<number>;
  command_id: number;
  ts: number;
  stream: string;
  text: string;
}

export interface CommandLogUsageTable {
  command_id: number;
  bytes: number;
  lines: number;
  dropped_bytes: Generated<number>;
  dropped_lines: Generated<number>;
  marker_id: number | null;
}
