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
import { sql } from 'kysely';
import { directOf, exclusive, type Db } from './database.ts';
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
  const sqlite = directOf(db);
  if (!sqlite) return claimPostgres(db, target, claim);
  return exclusive(db, sqlite, () => claimDirect(sqlite, target, claim));
}

/**
 * The claim on PostgreSQL, where several replicas (each with a pool of connections) claim at
 * once: one statement, so one transaction.
 *
 * Why it is safe: `pick` locks the oldest queued command of the target FOR UPDATE SKIP LOCKED, so
 * a concurrent claim skips a row another claim holds and takes the next one instead of waiting or
 * taking the same; the UPDATE re-checks state = 'queued' on the locked row (a row claimed and
 * committed in between is no longer queued, and PostgreSQL re-evaluates the condition on the
 * newest version). So two claims can never both take the same row.
 *
 * A revoked agent never claims: `agent` reads the claiming agent's row only while revoked_at IS
 * NULL, FOR SHARE. Revocation (revokeAgent) updates that row in a transaction that then ends the
 * agent's leases. Either the claim locks the row first: the revocation's UPDATE waits for the
 * claim's commit, and its later statement ending the agent's running commands sees the claimed
 * one; or the revocation updates it first: the claim's lock waits for that commit and then
 * re-checks revoked_at on the new version, finds it set, and takes nothing. (An agent that has no
 * row claims nothing; every authenticated agent has one.)
 *
 * No deadlock with a revocation: `pick` tests `EXISTS (SELECT 1 FROM agent)` before it scans, so
 * the agent's row is locked before any command row, the order revokeAgent takes them in (agents,
 * then the agent's running commands). With the agent's row joined after the pick instead, a claim
 * could hold a command's row while waiting for the agent's behind a revocation (found by the
 * revocation race test in postgres-queue.test.ts: "deadlock detected").
 *
 * The fencing lease id is written by the same UPDATE (a requeue clears it). The lease id is made
 * before the statement (one random id wasted when the queue is empty, against a round trip).
 * The timestamps are the caller's clock, which on PostgreSQL follows the database's (clock.ts).
 */
async function claimPostgres(
  db: Db,
  target: ClaimTarget,
  claim: { agentId: string; leaseId: string | (() => string); leaseExpiresAt: number; now: number },
): Promise<CommandRow | undefined> {
  const leaseId = typeof claim.leaseId === 'function' ? claim.leaseId() : claim.leaseId;
  const nid = target.nid === null ? sql`nid IS NULL` : sql`nid = ${target.nid}`;
  const r = await sql<CommandRow>`
    WITH agent AS (SELECT id FROM agents WHERE id = ${claim.agentId} AND revoked_at IS NULL FOR SHARE),
    pick AS (
      SELECT id FROM commands WHERE EXISTS (SELECT 1 FROM agent) AND state = 'queued' AND aid = ${target.aid} AND cid = ${target.cid} AND ${nid}
      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    UPDATE commands SET state = 'running', attempts = attempts + 1, lease_id = ${leaseId}, lease_expires_at = ${claim.leaseExpiresAt}::bigint,
      claimed_by = ${claim.agentId}, claimed_at = ${claim.now}::bigint
    FROM pick
    WHERE commands.id = pick.id AND commands.state = 'queued'
    RETURNING commands.*`.execute(db);
  return r.rows[0];
}
