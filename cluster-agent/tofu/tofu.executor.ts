/**
 * Runs a tofu spec: check the module out at its ref, point its state at a Kubernetes Secret
 * (backend override), write the variables to a 0600 var file outside the checkout, then init,
 * apply and read the outputs. Every output is written to the `<stateName>-outputs` Secret;
 * only the non-sensitive ones (and the names of the others) go back to the control plane.
 * With `action: delete`: init and `tofu destroy` against the same state, then the outputs Secret
 * is deleted (the state Secret stays, holding the empty state).
 */
import { join } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';
import type { TofuSpec } from '../../common/specs.ts';
import { writeFileAtomic } from '../../common/files.ts';
import { checkoutGit } from '../git/git.checkout.ts';
import { failureMessage, runProcess, type RunResult } from '../process/run.ts';
import { applySecret, deleteSecret, readSecretData } from '../kube/secrets.ts';
import { checkAborted, refResolvers, type StepContext, type StepResult } from '../steps/step.ts';
import {
  BACKEND_OVERRIDE_FILE,
  backendOverride,
  outputsSecretName,
  splitOutputs,
  stateSecretName,
  tofuApplyArgs,
  tofuDestroyArgs,
  tofuEnv,
  tofuFailureCode,
  tofuInitArgs,
  tofuInitHint,
  tofuForceUnlockArgs,
  tofuOutputArgs,
  parseStateLock,
  staleLockVerdict,
  varsFile,
} from './tofu.plan.ts';
import { resolveRefs } from '../steps/values.ts';
import { AGENT_STARTED_AT, KeyedQueue } from '../steps/keyed-queue.ts';

/** One tofu command per state (`namespace/stateName`) at a time. */
const queue = new KeyedQueue();

export async function executeTofu(spec: TofuSpec, s: StepContext): Promise<StepResult> {
  const namespace = spec.namespace ?? s.deps.config.agentNamespace;
  const key = `${namespace}/${spec.stateName}`;
  if (queue.busy(key)) s.exec.emit(`waiting for the other run on state ${namespace}/${stateSecretName(spec.stateName)}`);
  return queue.run(key, () => {
    checkAborted(s.exec.signal);
    return executeTofuSerialized(spec, s, namespace);
  });
}

/**
 * What a tofu run and a tofu diff share: the module checked out, pointed at its state Secret, its
 * vars resolved into a 0600 var file, and the environment tofu runs with.
 */
export async function prepareTofuWorkspace(
  spec: Pick<TofuSpec, 'source' | 'stateName' | 'vars'>,
  s: StepContext,
  namespace: string,
): Promise<{ dir: string; commit: string; varFile: string | undefined; env: Record<string, string> }> {
  const { config, kube } = s.deps;
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
  return { dir: co.dir, commit: co.commit, varFile, env };
}

async function executeTofuSerialized(spec: TofuSpec, s: StepContext, namespace: string): Promise<StepResult> {
  const { config, kube } = s.deps;
  const { dir, commit, varFile, env } = await prepareTofuWorkspace(spec, s, namespace);
  const run = (args: string[], captureStdout = false): Promise<RunResult> =>
    runProcess(config.tofuBin, args, {
      cwd: dir,
      env,
      signal: s.exec.signal,
      killGraceMs: config.killGraceSeconds * 1000,
      log: s.exec.log,
      captureStdout,
      onLine: (line, stream) => s.exec.emit(line, stream),
    });

  /** A state lock error naming a stale lock: force-unlock it (true: retry). Any other failure: false. */
  const unlockIfStale = async (r: RunResult, ns: string): Promise<boolean> => {
    const lock = parseStateLock(r.stderrTail);
    if (!lock) return false;
    const verdict = staleLockVerdict(lock, AGENT_STARTED_AT);
    const state = `${ns}/${stateSecretName(spec.stateName)}`;
    if (!verdict.stale) {
      s.exec.log.warn({ state, lock, reason: verdict.reason }, 'state lock held: not clearing it');
      s.exec.emit(`state lock held, not cleared: ${verdict.reason}`);
      return false;
    }
    s.exec.log.warn({ state, lock, reason: verdict.reason }, 'clearing a stale state lock (tofu force-unlock)');
    s.exec.emit(`clearing the stale state lock of ${state}: ${verdict.reason}`);
    const u = await run(tofuForceUnlockArgs(lock.id));
    checkAborted(s.exec.signal);
    if (u.exitCode !== 0) {
      s.exec.log.warn({ state, lockId: lock.id, exitCode: u.exitCode }, 'tofu force-unlock failed');
      s.exec.emit(failureMessage('tofu force-unlock', u));
      return false;
    }
    return true;
  };

  const destroy = spec.action === 'delete';
  const steps: [string, string[]][] = [
    ['tofu init', tofuInitArgs()],
    destroy ? ['tofu destroy', tofuDestroyArgs(varFile)] : ['tofu apply', tofuApplyArgs(varFile)],
  ];
  for (const [what, args] of steps) {
    s.exec.emit(`${what} (state ${namespace}/${stateSecretName(spec.stateName)})`);
    let r = await run([...args]);
    checkAborted(s.exec.signal);
    if (r.exitCode !== 0 && (await unlockIfStale(r, namespace))) {
      r = await run([...args]);
      checkAborted(s.exec.signal);
    }
    if (r.exitCode !== 0) {
      const hint = what === 'tofu init' ? tofuInitHint(r.stderrTail) : undefined;
      throw new CommandFailure(tofuFailureCode(r.stderrTail), `${failureMessage(what, r)}${hint ? `\n${hint}` : ''}`);
    }
  }
  if (destroy) {
    const outputsSecret = outputsSecretName(spec.stateName);
    if (await deleteSecret(kube.core, namespace, outputsSecret)) s.exec.emit(`deleted Secret ${namespace}/${outputsSecret}`);
    const o: Record<string, unknown> = { stateName: spec.stateName, namespace, commit, stateSecret: stateSecretName(spec.stateName), destroyed: true };
    return { outputs: o, lookup: async (key) => (Object.hasOwn(o, key) ? o[key] : undefined) };
  }

  // Never streamed: the JSON holds the sensitive values.
  const out = await run(tofuOutputArgs(), true);
  checkAborted(s.exec.signal);
  if (out.exitCode !== 0) throw new CommandFailure(tofuFailureCode(out.stderrTail), failureMessage('tofu output', out));
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
    commit,
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
      if (v === undefined) throw new CommandFailure('output_not_found', `Secret ${namespace}/${outputsSecret} has no key "${key}"`);
      s.exec.mask(v);
      return v;
    },
  };
}
