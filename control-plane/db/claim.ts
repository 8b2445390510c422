/**
 * The claim query: hands the oldest queued command of one target to one agent.
 *
 * Why it is safe: the UPDATE that takes the row re-checks `state = 'queued'`, and SQLite runs one
 * writer at a time. The pick (a read) and that UPDATE (commands.repository.ts, claimDirect) run
 * synchronously back to back on the one connection, so nothing can claim the row in between, and
 * never inside an open Kysely transaction (`exclusive` waits for it). So two claims can never both
 * take the same row.
 *
 * A revoked agent never claims: the UPDATE also requires that the claiming agent's row has no
 * `revoked_at` (primary-key lookup). Revocation (agents.repository.ts, revokeAgent) sets it in a
 * transaction, and a claim runs either wholly before that commit or wholly after it (one writer,
 * `exclusive`), so a claim after the revocation takes nothing, even one by a poll that was
 * authenticated before it. Commands the agent claimed before are ended by the same transaction
 * (lease expired now: requeued, or failed with no attempts left), and its held polls are answered
 * at once (Dispatcher.revokeAgent).
 *
 * The claim writes a fresh lease id, the fencing
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
