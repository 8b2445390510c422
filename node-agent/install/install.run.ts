/**
 * Executes an install plan: writes the needed files under the root prefix (checking each file's
 * content again right before writing), and runs the needed host commands only when the root is /
 * and host changes are allowed. Anywhere else (a temp root, tests) host commands are reported as
 * dry-run and never executed: Kubernetes is never installed by accident.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/files.ts';
import { formatArgv, runCommand, type Runner } from '../process/run.ts';
import { describeAction, type Step } from './install.plan.ts';

export interface StepResult {
  id: Step['id'];
  status: 'done' | 'changed' | 'dry-run' | 'blocked' | 'failed';
  notes: string[];
}

export interface InstallResult {
  steps: StepResult[];
  ok: boolean;
  /** Steps that still need something (blocked or dry-run host commands). */
  pending: number;
}

/** Host commands run only on the real root, and never when TETHER_NODE_NO_HOST_CHANGES=1 (tests). */
export function hostCommandsAllowed(root: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return root === '/' && env.TETHER_NODE_NO_HOST_CHANGES !== '1';
}

export async function executePlan(
  steps: Step[],
  o: { root: string; hostCommands: boolean; run?: Runner; signal?: AbortSignal; onLine?: (line: string) => void },
): Promise<InstallResult> {
  const run = o.run ?? runCommand;
  const say = o.onLine ?? (() => undefined);
  const results: StepResult[] = [];
  for (const step of steps) {
    const r: StepResult = { id: step.id, status: 'done', notes: [] };
    results.push(r);
    const mark = (s: StepResult['status']) => {
      const rank = { done: 0, changed: 1, 'dry-run': 2, blocked: 3, failed: 4 };
      if (rank[s] > rank[r.status]) r.status = s;
    };
    for (const pa of step.actions) {
      if (o.signal?.aborted) throw o.signal.reason;
      if (!pa.needed) continue;
      const a = pa.action;
      if (a.kind === 'write-file') {
        const path = join(o.root, a.path);
        let current: string | null = null;
        try {
          current = readFileSync(path, 'utf8');
        } catch {
          /* absent */
        }
        if (current === a.content) continue; // checked again: someone else wrote it meanwhile
        writeFileAtomic(path, a.content, a.mode);
        r.notes.push(`wrote ${path}`);
        say(`[${step.id}] wrote ${path}`);
        mark('changed');
      } else if (a.kind === 'blocked') {
        r.notes.push(a.message);
        say(`[${step.id}] blocked: ${a.message}`);
        mark('blocked');
      } else if (!o.hostCommands) {
        r.notes.push(`dry-run: ${formatArgv(a.argv[0]!, a.argv.slice(1))}`);
        say(`[${step.id}] dry-run (not executed): ${describeAction(a, o.root)}`);
        mark('dry-run');
      } else {
        say(`[${step.id}] ${describeAction(a, o.root)}`);
        const res = await run(a.argv[0]!, a.argv.slice(1), { timeoutMs: 30 * 60_000, ...(o.signal ? { signal: o.signal } : {}) });
        if (!res.ok) {
          const why = res.missing ? 'not found' : `exit ${res.exitCode}: ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' | ')}`;
          r.notes.push(`${formatArgv(a.argv[0]!, a.argv.slice(1))} failed (${why})`);
          say(`[${step.id}] failed: ${why}`);
          mark('failed');
          // Later steps build on this one: stop here; a re-run resumes from the facts.
          return { steps: results, ok: false, pending: results.filter((x) => x.status !== 'done' && x.status !== 'changed').length };
        }
        r.notes.push(`ran ${formatArgv(a.argv[0]!, a.argv.slice(1))}`);
        mark('changed');
      }
    }
  }
  return { steps: results, ok: true, pending: results.filter((x) => x.status === 'dry-run' || x.status === 'blocked').length };
}
