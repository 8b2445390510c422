import { sql, type Kysely } from 'kysely';

/**
 * Every claim and every end of a command rewrote an entry of commands_running (claimed_by,
 * lease_expires_at) WHERE state = 'running': one more B-tree page in the WAL per commit, two per
 * command (issue 18, "The command path, second pass"). What read it by agent: the cancellation
 * lookup (a running command of this agent with a cancellation requested), the heartbeat's lease
 * extension and a revocation. The cancellation lookup gets an index of its own that holds only
 * running commands with a cancellation requested (empty nearly always, so claims and results
 * never touch it); the extension finds its rows by id (the primary key), and a revocation (rare)
 * walks commands_running_lease, which holds every running command.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX commands_cancel_requested ON commands (claimed_by) WHERE state = 'running' AND cancel_requested_at IS NOT NULL`.execute(db);
  await sql`DROP INDEX commands_running`.execute(db);
}
