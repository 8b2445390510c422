/**
 * `tether diff OSID`: checks an instance for drift (POST /v1/instances/{osid}/diff), waits for the
 * job (quietly; `--follow` prints its log), and prints per resource like `kubectl diff`: a header
 * per object, the unified diff (`-` live, `+` desired; a Secret by key only), `missing`. Exit
 * codes a CI pipeline can gate on: 0 everything in sync, 2 drift, 1 the diff itself failed (any
 * error, bad usage and a refused request included: here 2 means drift only; main.ts maps
 * commander's usage errors for `diff` to 1). `--file DIR` compares the desired state of a folder
 * `tether pull` wrote (its commit and inputs) instead of the instance's own; the resources that
 * state would remove (pruning) are listed too, and count as drift.
 */
import type { Command } from 'commander';
import { isTerminal, type CommandView } from '../../common/wire.ts';
import { errorMessage } from '../../common/errors.ts';
import { OSID_RE } from '../bundles/compile.ts';
import type { DiffResponse } from '../bundles/bundles.wire.ts';

export interface DiffHelpers {
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
  out(s: string): void;
  err(s: string): void;
  /** Streams job `id`'s log to its end (tether follow). */
  follow(id: number): Promise<number>;
}

interface Resource {
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  address?: string;
  status: string;
  diff?: string;
  error?: string;
}

interface StepReport {
  name: string;
  state: string;
  outputs?: { resources?: Resource[]; summary?: { inSync: number; drifted: number; missing: number; error: number } };
  error?: { code: string; message: string };
}

export const DIFF_EXIT = { inSync: 0, failed: 1, drifted: 2 } as const;

/** What a diff flow's job found, as text and an exit code. */
export function renderDiff(job: Pick<CommandView, 'state' | 'outputs' | 'error'>): { text: string; exitCode: number } {
  const steps = ((job.outputs as { steps?: StepReport[] } | null)?.steps ?? []).filter((s) => s && typeof s.name === 'string');
  const lines: string[] = [];
  let drift = 0;
  let failed = job.state !== 'succeeded';
  for (const step of steps) {
    if (step.state !== 'succeeded') {
      failed = true;
      lines.push(`=== ${step.name}: ${step.state}${step.error ? `: ${step.error.code}: ${step.error.message}` : ''}`);
      continue;
    }
    for (const r of step.outputs?.resources ?? []) {
      const what = r.address ?? `${r.apiVersion ?? ''} ${r.kind ?? ''} ${r.namespace ? `${r.namespace}/` : ''}${r.name ?? ''}`.trim();
      if (r.status === 'in-sync') continue;
      if (r.status === 'error') failed = true;
      else drift++;
      const status = r.status === 'prune' ? 'prune (no longer in the desired state: would be deleted)' : r.status;
      lines.push(`=== ${step.name}: ${what}: ${status}${r.error ? `: ${r.error}` : ''}`);
      if (r.diff) lines.push(r.diff.replace(/\n$/, ''));
    }
  }
  if (job.state !== 'succeeded' && steps.length === 0) lines.push(`the diff job ${job.state}${job.error ? `: ${job.error.code}: ${job.error.message}` : ''}`);
  if (!failed && drift === 0) lines.push('in sync');
  return { text: lines.length ? `${lines.join('\n')}\n` : '', exitCode: failed ? DIFF_EXIT.failed : drift ? DIFF_EXIT.drifted : DIFF_EXIT.inSync };
}

/** The resources a desired state would remove (bundle-level pruning), in removal order, as plan lines. */
export function renderPrune(prune: DiffResponse['prune']): string {
  return prune.map((p) => `=== ${p.name}: ${p.type} resource no longer in the desired state: would be removed (${p.action})\n`).join('');
}

/** The diff and the pruned resources together: pruning is drift (exit 2) unless the diff failed. */
export function renderPlan(job: Pick<CommandView, 'state' | 'outputs' | 'error'>, prune: DiffResponse['prune']): { text: string; exitCode: number } {
  const r = renderDiff(job);
  if (prune.length === 0) return r;
  const text = renderPrune(prune) + r.text.replace(/^in sync\n$/m, '');
  return { text, exitCode: r.exitCode === DIFF_EXIT.failed ? DIFF_EXIT.failed : DIFF_EXIT.drifted };
}

/** Job `id`, polled (backing off to 2 s) until it ended. */
export async function waitJob(h: Pick<DiffHelpers, 'call'>, id: number): Promise<CommandView> {
  let job = await h.call<CommandView>('GET', `/v1/commands/${id}`);
  for (let delay = 200; !isTerminal(job.state); delay = Math.min(delay * 2, 2000)) {
    await new Promise((r) => setTimeout(r, delay));
    job = await h.call<CommandView>('GET', `/v1/commands/${id}`);
  }
  return job;
}

/**
 * The instance and request body of `diff|sync [OSID] [--file DIR]`: the OSID alone, or the
 * folder's state (its instance; an OSID given too must be the same).
 */
export async function target(osid: string | undefined, file: string | undefined): Promise<{ osid: string; body?: { commit: string; inputs: Record<string, string | number | boolean> } }> {
  if (file === undefined) {
    if (osid === undefined) throw new Error('give an instance id, or --file DIR (a folder tether pull wrote)');
    if (!OSID_RE.test(osid)) throw new Error(`"${osid}" is not an instance id (see tether instances list)`);
    return { osid };
  }
  const { readStateFile, stateBody } = await import('./pull.commands.ts');
  const state = readStateFile(file);
  if (osid !== undefined && osid !== state.instance) throw new Error(`${file} holds the state of ${state.instance}, not ${osid}`);
  return { osid: state.instance, body: stateBody(state) };
}

/** Submits the diff of `t` and waits for it (quietly; `follow` prints the log). */
export async function runDiff(h: DiffHelpers, t: { osid: string; body?: unknown }, follow: boolean): Promise<{ job: CommandView; prune: DiffResponse['prune'] }> {
  const r = await h.call<DiffResponse>('POST', `/v1/instances/${encodeURIComponent(t.osid)}/diff`, t.body);
  if (follow) await h.follow(r.jobId);
  return { job: await waitJob(h, r.jobId), prune: r.prune ?? [] };
}

export function registerDiffCommand(program: Command, h: DiffHelpers): void {
  program
    .command('diff [osid]')
    .description("compare an instance's desired state with the cluster; exits 0 in sync, 2 drift, 1 the diff failed")
    .option('--file <dir>', 'compare the desired state of this folder (tether pull) instead of the instance\'s own')
    .option('--follow', "print the diff job's log while it runs")
    .option('--json', "print the diff job's outputs as JSON (with prune: the resources that would be removed)")
    .action(async (osid: string | undefined, o: { file?: string; follow?: boolean; json?: boolean }) => {
      try {
        const { job, prune } = await runDiff(h, await target(osid, o.file), o.follow === true);
        const r = renderPlan(job, prune);
        if (o.json) h.out(`${JSON.stringify({ ...(job.outputs as object | null), prune }, null, 2)}\n`);
        else h.out(r.text);
        process.exitCode = r.exitCode;
      } catch (err) {
        h.err(`tether: ${(err as { code?: string }).code ? `${(err as { code: string }).code}: ` : ''}${errorMessage(err)}\n`);
        process.exitCode = DIFF_EXIT.failed;
      }
    });
}
