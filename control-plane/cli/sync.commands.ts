/**
 * `tether sync [OSID] [--file DIR]`: plans first (the diff of the desired state, as `tether diff`
 * prints it, plus the resources that would be removed, in removal order), asks `Apply? [y/N]` on
 * a terminal (`--yes` skips it; without a terminal `--yes` is required), then applies
 * (POST /v1/instances/{osid}/sync, the next version) and follows the job. Nothing to change: says
 * so and applies nothing unless `--force`. A plan that failed applies nothing unless `--force`.
 * Exit codes: 0 applied (or nothing to change), 1 anything else (declined, failed, refused).
 */
import type { Command } from 'commander';
import type { CommandView } from '../../common/wire.ts';
import type { DeployResponse, DiffResponse } from '../bundles/bundles.wire.ts';
import { OSID_RE } from '../bundles/compile.ts';
import { DIFF_EXIT, renderPlan, runDiff, target, waitJob, type DiffHelpers } from './diff.commands.ts';

export interface SyncHelpers extends DiffHelpers {
  /** Asks on the terminal; undefined when stdin is not a terminal. */
  confirm(question: string): Promise<boolean | undefined>;
  usage(message: string): Error;
}

export interface SyncOptions {
  file?: string;
  yes?: boolean;
  force?: boolean;
  follow?: boolean;
  json?: boolean;
}

/** What sync does after the plan: a closed set of outcomes. */
export type SyncDecision = { kind: 'apply' } | { kind: 'nothing' } | { kind: 'plan-failed' } | { kind: 'ask' };

/** The decision from the plan's exit code (0 in sync, 2 changes, 1 failed) and the flags. */
export function decide(planExit: number, o: Pick<SyncOptions, 'yes' | 'force'>): SyncDecision {
  if (planExit === DIFF_EXIT.failed && !o.force) return { kind: 'plan-failed' };
  if (planExit === DIFF_EXIT.inSync && !o.force) return { kind: 'nothing' };
  return o.yes ? { kind: 'apply' } : { kind: 'ask' };
}

export function registerSyncCommand(program: Command, h: SyncHelpers): void {
  program
    .command('sync [osid]')
    .description("plan, confirm, then apply an instance's desired state again (repairs drift, prunes what it no longer has) and follow the job")
    .option('--file <dir>', 'push the desired state of this folder (tether pull) instead: its commit and inputs become the next version')
    .option('-y, --yes', 'apply without asking (required when not on a terminal)')
    .option('--force', 'apply even when the plan finds nothing to change or could not be made')
    .option('--follow', "print the plan's diff job log too")
    .option('--json', 'print {osid, plan: {steps, prune}, applied, version, jobId, state} as JSON at the end (no log)')
    .action(async (osid: string | undefined, o: SyncOptions) => {
      if (osid === undefined && o.file === undefined) throw h.usage('sync <osid>, or sync --file DIR (a folder tether pull wrote)');
      if (osid !== undefined && !OSID_RE.test(osid)) throw h.usage(`"${osid}" is not an instance id (see tether instances list)`);
      const t = await target(osid, o.file);
      const { job: plan, prune } = await runDiff(h, t, o.follow === true);
      const r = renderPlan(plan, prune);
      const result: { osid: string; plan: { steps: unknown; prune: DiffResponse['prune'] }; applied: boolean; version?: number; jobId?: number; state?: string } = {
        osid: t.osid,
        plan: { steps: (plan.outputs as { steps?: unknown } | null)?.steps ?? [], prune },
        applied: false,
      };
      if (!o.json) h.out(r.text);
      const d = decide(r.exitCode, o);
      const finish = (code: number, message?: string) => {
        if (message) h.err(`tether: ${message}\n`);
        if (o.json) h.out(`${JSON.stringify(result, null, 2)}\n`);
        process.exitCode = code;
      };
      if (d.kind === 'plan-failed') return finish(1, 'the plan failed: nothing applied (--force applies anyway)');
      if (d.kind === 'nothing') {
        if (!o.json) h.out('nothing to change: not applied (--force applies anyway)\n');
        return finish(0);
      }
      if (d.kind === 'ask') {
        const yes = await h.confirm('Apply? [y/N] ');
        if (yes === undefined) return finish(1, 'not a terminal: pass --yes to apply');
        if (!yes) return finish(1, 'not applied');
      }
      const s = await h.call<DeployResponse>('POST', `/v1/instances/${encodeURIComponent(t.osid)}/sync`, t.body);
      Object.assign(result, { applied: true, version: s.version, jobId: s.jobId });
      let state: CommandView['state'];
      if (o.json) state = (await waitJob(h, s.jobId)).state;
      else {
        h.err(`tether: applying ${t.osid} as version ${s.version}: job ${s.jobId}\n`);
        state = (await h.follow(s.jobId)) === 0 ? 'succeeded' : (await waitJob(h, s.jobId)).state;
      }
      result.state = state;
      return finish(state === 'succeeded' ? 0 : 1, state === 'succeeded' ? undefined : `job ${s.jobId} ${state}`);
    });
}
