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
import { writeFileAtomic } from '../../common/files.ts';
import { checkoutGit } from '../git/git.checkout.ts';
import { failureMessage, runProcess, type RunResult } from '../process/run.ts';
import { checkAborted, plainLookup, refResolvers, type StepContext, type StepResult } from '../steps/step.ts';
import { resolveRefs } from '../steps/values.ts';
import { planDiff, planExit, tofuPlanArgs, tofuShowPlanArgs } from './diff.plan.ts';
import { BACKEND_OVERRIDE_FILE, backendOverride, stateSecretName, tofuEnv, tofuFailureCode, tofuInitArgs, tofuInitHint, varsFile } from './tofu.plan.ts';

export async function executeTofuDiff(spec: TofuDiffTarget, s: StepContext): Promise<StepResult> {
  const { config, kube } = s.deps;
  const namespace = spec.namespace ?? config.agentNamespace;
  const state = `${namespace}/${stateSecretName(spec.stateName)}`;
  const co = await checkoutGit(spec.source.git, join(s.runDir, 'src'), { signal: s.exec.signal, emit: (l) => s.exec.emit(l) });
  checkAborted(s.exec.signal);
  writeFileAtomic(
    join(co.dir, BACKEND_OVERRIDE_FILE),
    backendOverride({ stateName: spec.stateName, namespace, inCluster: kube.inCluster, kubeconfigPath: kube.kubeconfigPath }),
    0o600,
  );
  let varFile: string | undefined;
  if (spec.vars && Object.keys(spec.vars).length > 0) {
    const resolved = (await resolveRefs(spec.vars, refResolvers(s, namespace))) as Record<string, unknown>;
    varFile = join(s.runDir, 'secret', 'vars.tfvars.json');
    writeFileAtomic(varFile, varsFile(resolved), 0o600);
  }
  const env = {
    ...tofuEnv({ cliConfigFile: config.tofuCliConfigFile, pluginCacheDir: config.tofuPluginCacheDir, cluster: kube.tofuCluster }),
    TF_DATA_DIR: join(s.runDir, 'tofu-data'),
  };
  const run = (args: string[], captureStdout: boolean): Promise<RunResult> =>
    runProcess(config.tofuBin, args, {
      cwd: co.dir,
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
  const outputs: Record<string, unknown> = { stateName: spec.stateName, namespace, commit: co.commit, stateSecret: stateSecretName(spec.stateName), resources, summary };
  return { outputs, lookup: plainLookup(outputs) };
}
