/**
 * Runs a helm spec: fetch the chart's git source when it has one, resolve the values (secret and
 * output references) into a 0600 file in the step's scratch folder, then `helm upgrade --install`.
 * With `action: delete`: `helm uninstall` (no chart, no values).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';
import type { HelmSpec } from '../../common/specs.ts';
import { writeFileAtomic } from '../../common/files.ts';
import { checkoutGit } from '../git/git.checkout.ts';
import {
  helmEnv,
  helmFailureCode,
  helmRecovery,
  isHelmOperationInProgress,
  parseHelmHistory,
  parseHelmRelease,
  parseHelmStatus,
  planHelmHistory,
  planHelmRollback,
  planHelmStatus,
  planHelmUninstall,
  planHelmUpgrade,
} from './helm.plan.ts';
import { failureMessage, runProcess, type RunResult } from '../process/run.ts';
import { checkAborted, plainLookup, refResolvers, type StepContext, type StepResult } from '../steps/step.ts';
import { deepMerge, resolveRefs } from '../steps/values.ts';
import { AGENT_STARTED_AT, KeyedQueue } from '../steps/keyed-queue.ts';

/** One helm command per release (`namespace/release`) at a time. */
const queue = new KeyedQueue();

export async function executeHelm(spec: HelmSpec, s: StepContext): Promise<StepResult> {
  const key = `${spec.namespace}/${spec.release}`;
  if (queue.busy(key)) s.exec.emit(`waiting for the other run on release ${key}`);
  return queue.run(key, () => {
    checkAborted(s.exec.signal);
    return spec.action === 'delete' ? uninstallHelm(spec, s) : upgradeHelm(spec, s);
  });
}

/** Runs helm with the agent's helm home; stdout captured (release JSON holds values) unless `stream`. */
function helm(s: StepContext, args: string[], stream = false): Promise<RunResult> {
  const helmHome = join(s.deps.config.workDir, 'helm');
  mkdirSync(helmHome, { recursive: true, mode: 0o700 });
  return runProcess(s.deps.config.helmBin, args, {
    env: helmEnv(helmHome),
    signal: s.exec.signal,
    killGraceMs: s.deps.config.killGraceSeconds * 1000,
    log: s.exec.log,
    captureStdout: !stream,
    onLine: (line, st) => s.exec.emit(line, st),
  });
}

/**
 * After helm said another operation is in progress: clears the release's pending state when it
 * is stale (see {@link helmRecovery}). True when it did (retry), false to fail as reported.
 */
async function recoverPendingRelease(spec: HelmSpec, s: StepContext): Promise<boolean> {
  const input = { spec, kubeconfig: s.deps.kube.kubeconfigPath };
  const st = await helm(s, planHelmStatus(input));
  checkAborted(s.exec.signal);
  if (st.exitCode !== 0) return false;
  const hist = await helm(s, planHelmHistory(input));
  checkAborted(s.exec.signal);
  if (hist.exitCode !== 0) return false;
  let decision;
  try {
    decision = helmRecovery(parseHelmStatus(st.stdout), parseHelmHistory(hist.stdout), AGENT_STARTED_AT);
  } catch (err) {
    s.exec.log.warn({ err, release: spec.release }, 'could not read the release state');
    return false;
  }
  const where = { release: spec.release, namespace: spec.namespace, reason: decision.reason };
  if (decision.action === 'none') {
    s.exec.log.warn(where, 'release busy: not clearing it');
    s.exec.emit(`release busy, not cleared: ${decision.reason}`);
    return false;
  }
  s.exec.log.warn({ ...where, action: decision.action }, 'clearing a stale pending release');
  s.exec.emit(`clearing the stale pending release ${spec.namespace}/${spec.release}: ${decision.reason}`);
  const args = decision.action === 'rollback' ? planHelmRollback(input, decision.revision) : planHelmUninstall(input);
  const r = await helm(s, args, true);
  checkAborted(s.exec.signal);
  if (r.exitCode !== 0) {
    s.exec.emit(failureMessage(`helm ${decision.action}`, r));
    return false;
  }
  return true;
}

/**
 * What a helm upgrade and a helm diff share: the chart checked out when it comes from git, and the
 * values (secretRefs resolved in the agent) in a 0600 file.
 */
export async function prepareHelmInputs(spec: Pick<HelmSpec, 'chart' | 'values' | 'namespace'>, s: StepContext): Promise<{ chartPath: string | undefined; valuesFile: string | undefined }> {
  let chartPath: string | undefined;
  if ('git' in spec.chart) chartPath = (await checkoutGit(spec.chart.git, join(s.runDir, 'src'), { signal: s.exec.signal, emit: (l) => s.exec.emit(l) })).dir;
  checkAborted(s.exec.signal);
  let valuesFile: string | undefined;
  if (spec.values && Object.keys(spec.values).length > 0) {
    const resolved = await resolveRefs(spec.values, refResolvers(s, spec.namespace));
    valuesFile = join(s.runDir, 'secret', 'values.json');
    writeFileAtomic(valuesFile, JSON.stringify(deepMerge(resolved)), 0o600);
  }
  checkAborted(s.exec.signal);
  return { chartPath, valuesFile };
}

async function upgradeHelm(spec: HelmSpec, s: StepContext): Promise<StepResult> {
  const { kube } = s.deps;
  const { chartPath, valuesFile } = await prepareHelmInputs(spec, s);

  const args = planHelmUpgrade({ spec, kubeconfig: kube.kubeconfigPath, chartPath, valuesFile });
  s.exec.emit(`helm upgrade --install ${spec.release} (namespace ${spec.namespace})`);
  let r = await helm(s, args); // stdout captured: the release JSON holds the values
  checkAborted(s.exec.signal);
  if (r.exitCode !== 0 && isHelmOperationInProgress(r.stderrTail) && (await recoverPendingRelease(spec, s))) {
    r = await helm(s, args);
    checkAborted(s.exec.signal);
  }
  if (r.exitCode !== 0) throw new CommandFailure(helmFailureCode(r.stderrTail), failureMessage('helm upgrade', r));
  let outputs;
  try {
    outputs = parseHelmRelease(r.stdout);
  } catch (err) {
    throw new CommandFailure('helm_failed', err instanceof Error ? err.message : String(err));
  }
  s.exec.emit(`release ${outputs.release} revision ${outputs.revision}: ${outputs.status}`);
  const o = { ...outputs } as Record<string, unknown>;
  return { outputs: o, lookup: plainLookup(o) };
}

async function uninstallHelm(spec: HelmSpec, s: StepContext): Promise<StepResult> {
  s.exec.emit(`helm uninstall ${spec.release} (namespace ${spec.namespace})`);
  const r = await helm(s, planHelmUninstall({ spec, kubeconfig: s.deps.kube.kubeconfigPath }), true);
  checkAborted(s.exec.signal);
  if (r.exitCode !== 0) throw new CommandFailure(helmFailureCode(r.stderrTail), failureMessage('helm uninstall', r));
  const o: Record<string, unknown> = { release: spec.release, namespace: spec.namespace, uninstalled: true };
  return { outputs: o, lookup: plainLookup(o) };
}
