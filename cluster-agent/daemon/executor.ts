/**
 * The cluster agent's Executor: validates the claimed spec again (the agent never trusts the
 * wire), gives it a private scratch folder, runs it, and turns errors into outcomes.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Executor, Outcome } from '../../common/agent/runtime.ts';
import { classifyFailure, errorMessage } from '../../common/errors.ts';
import { FlowFailure } from '../flow/flow.executor.ts';
import { reapLeftoverProcesses } from '../process/run.ts';
import { SecretResolver } from '../kube/secrets.ts';
import { noOutputRefs, type AgentDeps, type StepContext } from '../steps/step.ts';
import { commandEntry } from './commands.ts';

export function createExecutor(deps: AgentDeps): Executor {
  const runsDir = join(deps.config.workDir, 'runs');
  // Scratch left by a previous process (killed mid-run) may hold resolved secrets.
  rmSync(runsDir, { recursive: true, force: true });
  mkdirSync(runsDir, { recursive: true, mode: 0o700 });
  // So may processes of that process's helm/tofu runs (their grandchildren survive the agent).
  reapLeftoverProcesses(join(deps.config.workDir, 'processes'), deps.log);

  return async (command, ctx): Promise<Outcome> => {
    const entry = commandEntry(command.type);
    if (!entry) return { status: 'failed', error: { code: 'unsupported_command', message: `the cluster agent does not run ${command.type} commands` } };
    const runDir = mkdtempSync(join(runsDir, `${command.id}-`));
    const s: StepContext = { deps, exec: ctx, runDir, secrets: new SecretResolver(deps.kube.core, ctx.mask), output: noOutputRefs };
    try {
      const result = await entry.run(command.spec, s);
      return { status: 'succeeded', outputs: result.outputs };
    } catch (err) {
      if (ctx.signal.aborted) return { status: 'cancelled', message: errorMessage(ctx.signal.reason) };
      const { code, retryable } = classifyFailure(err);
      ctx.log.warn({ err, code, retryable }, 'command failed');
      return {
        status: 'failed',
        error: { code, message: errorMessage(err) },
        ...(err instanceof FlowFailure ? { outputs: err.outputs } : {}),
      };
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  };
}
