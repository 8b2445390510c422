/**
 * `tether diff OSID`: checks an instance for drift (POST /v1/instances/{osid}/diff), waits for the
 * job (quietly; `--follow` prints its log), and prints per resource like `kubectl diff`: a header
 * per object, the unified diff (`-` live, `+` desired; a Secret by key only), `missing`. Exit
 * codes a CI pipeline can gate on: 0 everything in sync, 2 drift, 1 the diff itself failed (any
 * error, bad usage and a refused request included: here 2 means drift only; main.ts maps
 * commander's usage errors for `diff` to 1).
 */
import type { Command } from 'commander';
import { isTerminal, type CommandView } from '../../common/wire.ts';
import { errorMessage } from '../../common/errors.ts';
import { OSID_RE } from '../bundles/compile.ts';

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
      lines.push(`=== ${step.name}: ${what}: ${r.status}${r.error ? `: ${r.error}` : ''}`);
      if (r.diff) lines.push(r.diff.replace(/\n$/, ''));
    }
  }
  if (job.state !== 'succeeded' && steps.length === 0) lines.push(`the diff job ${job.state}${job.error ? `: ${job.error.code}: ${job.error.message}` : ''}`);
  if (!failed && drift === 0) lines.push('in sync');
  return { text: lines.length ? `${lines.join('\n')}\n` : '', exitCode: failed ? DIFF_EXIT.failed : drift ? DIFF_EXIT.drifted : DIFF_EXIT.inSync };
}

export function registerDiffCommand(program: Command, h: DiffHelpers): void {
  program
    .command('diff <osid>')
    .description("compare an instance's desired state with the cluster; exits 0 in sync, 2 drift, 1 the diff failed")
    .option('--follow', "print the diff job's log while it runs")
    .option('--json', "print the diff job's outputs as JSON")
    .action(async (osid: string, o: { follow?: boolean; json?: boolean }) => {
      try {
        if (!OSID_RE.test(osid)) throw new Error(`"${osid}" is not an instance id (see tether instances list)`);
        const { jobId } = await h.call<{ jobId: number }>('POST', `/v1/instances/${encodeURIComponent(osid)}/diff`);
        if (o.follow) await h.follow(jobId);
        let job = await h.call<CommandView>('GET', `/v1/commands/${jobId}`);
        for (let delay = 200; !isTerminal(job.state); delay = Math.min(delay * 2, 2000)) {
          await new Promise((r) => setTimeout(r, delay));
          job = await h.call<CommandView>('GET', `/v1/commands/${jobId}`);
        }
        const r = renderDiff(job);
        if (o.json) h.out(`${JSON.stringify(job.outputs, null, 2)}\n`);
        else h.out(r.text);
        process.exitCode = r.exitCode;
      } catch (err) {
        h.err(`tether: ${(err as { code?: string }).code ? `${(err as { code: string }).code}: ` : ''}${errorMessage(err)}\n`);
        process.exitCode = DIFF_EXIT.failed;
      }
    });
}
