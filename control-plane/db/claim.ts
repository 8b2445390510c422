/**
 * The claim query: hands the oldest queued command of one target to one agent.
 *
 * Why it is safe: the UPDATE that takes the row re-checks `state = 'queued'`, and SQLite runs one
 * writer at a time. The pick (a read) and that UPDATE (commands.repository.ts, claimDirect) run
 * synchronously back to back on the one connection, so nothing can claim the row in between, and
 * never inside an open Kysely transaction (`exclusive` waits for it). So two claims can never both
 * take the same row. The claim writes a fresh lease id, the fencing
 * token every later report about this attempt must carry; a requeue clears it, so a report from
 * an older attempt can never match again.
 */
import { exclusive, sqliteOf, type Db } from './database.ts';
import { claimDirect, type CommandRow } from './commands.repository.ts';

export interface ClaimTarget {
  aid: string;
  cid: string;
  /** A node agent claims only its node's commands; a cluster agent (nid null) the cluster's. */
  nid: string | null;
}

/** `leaseId` may be a function: it is then called only when there is a command to claim. */
export async function claimNext(
  db: Db,
  target: ClaimTarget,
  claim: { agentId: string; leaseId: string | (() => string); leaseExpiresAt: number; now: number },
): Promise<CommandRow | undefined> {
  const sqlite = sqliteOf(db);
  return exclusive(db, sqlite, () => claimDirect(sqlite, target, claim));
}
