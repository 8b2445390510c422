/**
 * Runs a tofu spec: check the module out at its ref, point its state at a Kubernetes Secret
 * (backend override), write the variables to a 0600 var file outside the checkout, then init,
 * apply and read the outputs. Every output is written to the `<stateName>-outputs` Secret;
 * only the non-sensitive ones (and the names of the others) go back to the control plane.
 * With `action: delete`: init and `tofu destroy` against the same state, then the outputs Secret
 * is deleted (the state Secret stays, holding the empty state).
 */
import { join } from 'node:path';
import { TetherError } from '../common/errors.ts';
import type { TofuSpec } from '../common/specs.ts';
import { writeFileAtomic } from '../common/files.ts';
import { checkoutGit } from './git.checkout.ts';
import { failureMessage, runProcess, type RunResult } from './process.run.ts';
import { applySecret, deleteSecret, readSecretData } from './secrets.ts';
import { checkAborted, refResolvers, type StepContext, type StepResult } from './step.ts';
import {
  BACKEND_OVERRIDE_FILE,
  backendOverride,
  outputsSecretName,
  splitOutputs,
  stateSecretName,
  tofuApplyArgs,
  tofuDestroyArgs,
  tofuEnv,
  tofuInitArgs,
  tofuOutputArgs,
  varsFile,
} from './tofu.plan.ts';
import { resolveRefs } from './values.ts';

export async function executeTofu(spec: TofuSpec, s: StepContext): Promise<StepResult> {
  const { config, kube } = s.deps;
  const namespace = spec.namespace ?? config.agentNamespace;
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
    ...tofuEnv({ cliConfigFile: config.tofuCliConfigFile, pluginCacheDir: config.tofuPluginCacheDir }),
    TF_DATA_DIR: join(s.runDir, 'tofu-data'),
  };
  const run = (args: string[], captureStdout = false): Promise<RunResult> =>
    runProcess(config.tofuBin, args, {
      cwd: co.dir,
      env,
      signal: s.exec.signal,
      killGraceMs: config.killGraceSeconds * 1000,
      log: s.exec.log,
      captureStdout,
      onLine: (line, stream) => s.exec.emit(line, stream),
    });

  const destroy = spec.action === 'delete';
  const steps: [string, string[]][] = [
    ['tofu init', tofuInitArgs()],
    destroy ? ['tofu destroy', tofuDestroyArgs(varFile)] : ['tofu apply', tofuApplyArgs(varFile)],
  ];
  for (const [what, args] of steps) {
    s.exec.emit(`${what} (state ${namespace}/${stateSecretName(spec.stateName)})`);
    const r = await run([...args]);
    checkAborted(s.exec.signal);
    if (r.exitCode !== 0) throw new TetherError('tofu_failed', failureMessage(what, r));
  }
  if (destroy) {
    const outputsSecret = outputsSecretName(spec.stateName);
    if (await deleteSecret(kube.core, namespace, outputsSecret)) s.exec.emit(`deleted Secret ${namespace}/${outputsSecret}`);
    const o: Record<string, unknown> = { stateName: spec.stateName, namespace, commit: co.commit, stateSecret: stateSecretName(spec.stateName), destroyed: true };
    return { outputs: o, lookup: async (key) => (Object.hasOwn(o, key) ? o[key] : undefined) };
  }

  // Never streamed: the JSON holds the sensitive values.
  const out = await run(tofuOutputArgs(), true);
  checkAborted(s.exec.signal);
  if (out.exitCode !== 0) throw new TetherError('tofu_failed', failureMessage('tofu output', out));
  const { plain, sensitive } = splitOutputs(out.stdout);
  for (const v of Object.values(sensitive)) s.exec.mask(v);

  const outputsSecret = outputsSecretName(spec.stateName);
  const data: Record<string, string> = { ...sensitive };
  for (const [k, v] of Object.entries(plain)) data[k] = typeof v === 'string' ? v : JSON.stringify(v);
  await applySecret(kube.objects, {
    namespace,
    name: outputsSecret,
    data,
    labels: { 'tether.dev/state': spec.stateName },
  });
  const sensitiveNames = Object.keys(sensitive).sort();
  s.exec.emit(`outputs written to Secret ${namespace}/${outputsSecret}${sensitiveNames.length ? ` (sensitive: ${sensitiveNames.join(', ')})` : ''}`);

  const outputs: Record<string, unknown> = {
    stateName: spec.stateName,
    namespace,
    commit: co.commit,
    stateSecret: stateSecretName(spec.stateName),
    outputsSecret,
    outputs: plain,
    sensitiveOutputs: sensitiveNames,
  };
  return {
    outputs,
    lookup: async (key) => {
      if (Object.hasOwn(plain, key)) return plain[key];
      if (!sensitiveNames.includes(key)) return undefined;
      // Sensitive values are read back from the cluster, never kept with the step's results.
      const stored = await readSecretData(kube.core, namespace, outputsSecret);
      const v = stored?.[key];
      if (v === undefined) throw new TetherError('output_not_found', `Secret ${namespace}/${outputsSecret} has no key "${key}"`);
      s.exec.mask(v);
      return v;
    },
  };
}
