/**
 * Loads the hub-and-spoke table (firewall.plan.ts) with `nft -f -`: one transaction that replaces
 * the agent's own table as a whole, at every VPN sync, so a table flushed or edited by hand is
 * restored by the next sync. Without nft the sync fails: wg1 is not served without its rules.
 */
import type { Logger } from '../../common/logger.ts';
import { CommandFailed, mustRun, type Runner } from '../process/run.ts';
import { FIREWALL_TABLE, renderFirewall, type FirewallInput } from './firewall.plan.ts';

export interface FirewallResult {
  table: string;
  /** Whether the table was missing or differed before this sync. */
  changed: boolean;
}

export async function applyFirewall(run: Runner, input: FirewallInput, log: Logger): Promise<FirewallResult> {
  const list = ['list', 'table', 'inet', FIREWALL_TABLE];
  const before = await run('nft', list, { timeoutMs: 10_000 });
  if (before.missing) throw new CommandFailed('nft', list, before);
  await mustRun(run, 'nft', ['-f', '-'], { input: renderFirewall(input), timeoutMs: 10_000 });
  const after = await mustRun(run, 'nft', list, { timeoutMs: 10_000 });
  const changed = !before.ok || stripCounters(before.stdout) !== stripCounters(after.stdout);
  if (changed) log.info({ table: `inet ${FIREWALL_TABLE}`, wg1: input.wg1Interface }, 'wg1 hub-and-spoke rules installed');
  return { table: `inet ${FIREWALL_TABLE}`, changed };
}

/** Counters change with traffic, not with the rules. */
function stripCounters(listing: string): string {
  return listing.replace(/counter packets \d+ bytes \d+/g, 'counter');
}
