/**
 * The `diff` command for tofu: changes nothing. The module is checked out and pointed at its
 * state Secret as `tofu` runs do, then `tofu plan -detailed-exitcode -lock=false` (refresh on: the
 * live objects are read; no lock taken, and plan never writes the refreshed state) saves a plan
 * that `tofu show -json` reads; diff.plan.ts keeps only resource addresses and planned actions.
 * Neither the plan's text (attribute values) nor its JSON is streamed to the control plane.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';
import type { TofuDiffTarget } from '../../common/specs.ts';
import { failureMessage, runProcess, type RunResult } from '../process/run.ts';
import { checkAborted, plainLookup, type StepContext, type StepResult } from '../steps/step.ts';
import { planDiff, planExit, tofuPlanArgs, tofuShowPlanArgs } from './diff.plan.ts';
import { stateSecretName, tofuFailureCode, tofuInitArgs, tofuInitHint } from './tofu.plan.ts';
import { prepareTofuWorkspace } from './tofu.executor.ts';

export async function executeTofuDiff(spec: TofuDiffTarget, s: StepContext): Promise<StepResult> {
  const { config } = s.deps;
  const namespace = spec.namespace ?? config.agentNamespace;
  const state = `${namespace}/${stateSecretName(spec.stateName)}`;
  const { dir, commit, varFile, env } = await prepareTofuWorkspace(spec, s, namespace);
  const run = (args: string[], captureStdout: boolean): Promise<RunResult> =>
    runProcess(config.tofuBin, args, {
      cwd: dir,
      env,
      signal: s.exec.signal,
      killGraceMs: config.killGraceSeconds * 1000,
      log: s.exec.log,
      captureStdout,
      onLine: (line, stream) => s.exec.emit(line, stream),
    });

  s.exec.emit(`tofu init (state ${state})`);
  const init = await run(tofuInitArgs(), false);
  checkAborted(s.exec.signal);
  if (init.exitCode !== 0) {
    const hint = tofuInitHint(init.stderrTail);
    throw new CommandFailure(tofuFailureCode(init.stderrTail), `${failureMessage('tofu init', init)}${hint ? `\n${hint}` : ''}`);
  }

  // The plan's text names attribute values: captured, never streamed.
  mkdirSync(join(s.runDir, 'secret'), { recursive: true, mode: 0o700 });
  const planFile = join(s.runDir, 'secret', 'diff.tfplan');
  s.exec.emit(`tofu plan -detailed-exitcode -lock=false (state ${state})`);
  const plan = await run(tofuPlanArgs(planFile, varFile), true);
  checkAborted(s.exec.signal);
  if (planExit(plan.exitCode) === 'error') throw new CommandFailure(tofuFailureCode(plan.stderrTail), failureMessage('tofu plan', plan));

  const show = await run(tofuShowPlanArgs(planFile), true);
  checkAborted(s.exec.signal);
  if (show.exitCode !== 0) throw new CommandFailure('tofu_failed', failureMessage('tofu show -json', show));
  const { resources, summary } = planDiff(show.stdout);
  if (planExit(plan.exitCode) === 'drifted' && summary.drifted + summary.missing === 0) {
    // Exit 2 with nothing this reading names (e.g. a change tofu reports only as text): never say in-sync.
    resources.push({ address: '(plan)', status: 'drifted', diff: 'tofu plan reports changes' });
    summary.drifted++;
  }
  for (const r of resources) if (r.status !== 'in-sync') s.exec.emit(`${r.address}: ${r.status}${r.diff ? ` (${r.diff})` : ''}${r.changedOutside ? ', changed outside tofu' : ''}`);
  s.exec.emit(`diff: ${summary.inSync} in sync, ${summary.drifted} drifted, ${summary.missing} missing, ${summary.error} error`);
  const outputs: Record<string, unknown> = { stateName: spec.stateName, namespace, commit, stateSecret: stateSecretName(spec.stateName), resources, summary };
  return { outputs, lookup: plainLookup(outputs) };
}
