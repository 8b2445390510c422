/**
 * Runs a helm spec: fetch the chart's git source when it has one, resolve the values (secret and
 * output references) into a 0600 file in the step's scratch folder, then `helm upgrade --install`.
 * With `action: delete`: `helm uninstall` (no chart, no values).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { TetherError } from '../common/errors.ts';
import type { HelmSpec } from '../common/specs.ts';
import { writeFileAtomic } from '../common/files.ts';
import { checkoutGit } from './git.checkout.ts';
import { helmEnv, parseHelmRelease, planHelmUninstall, planHelmUpgrade } from './helm.plan.ts';
import { failureMessage, runProcess } from './process.run.ts';
import { checkAborted, plainLookup, refResolvers, type StepContext, type StepResult } from './step.ts';
import { deepMerge, resolveRefs } from './values.ts';

export async function executeHelm(spec: HelmSpec, s: StepContext): Promise<StepResult> {
  if (spec.action === 'delete') return uninstallHelm(spec, s);
  const { config, kube } = s.deps;
  let chartPath: string | undefined;
  if ('git' in spec.chart) {
    const co = await checkoutGit(spec.chart.git, join(s.runDir, 'src'), { signal: s.exec.signal, emit: (l) => s.exec.emit(l) });
    chartPath = co.dir;
  }
  checkAborted(s.exec.signal);

  let valuesFile: string | undefined;
  if (spec.values && Object.keys(spec.values).length > 0) {
    const resolved = await resolveRefs(spec.values, refResolvers(s, spec.namespace));
    valuesFile = join(s.runDir, 'secret', 'values.json');
    writeFileAtomic(valuesFile, JSON.stringify(deepMerge(resolved)), 0o600);
  }
  checkAborted(s.exec.signal);

  const helmHome = join(config.workDir, 'helm');
  mkdirSync(helmHome, { recursive: true, mode: 0o700 });
  const args = planHelmUpgrade({ spec, kubeconfig: kube.kubeconfigPath, chartPath, valuesFile });
  s.exec.emit(`helm upgrade --install ${spec.release} (namespace ${spec.namespace})`);
  const r = await runProcess(config.helmBin, args, {
    env: helmEnv(helmHome),
    signal: s.exec.signal,
    killGraceMs: config.killGraceSeconds * 1000,
    log: s.exec.log,
    captureStdout: true, // the release JSON holds the values
    onLine: (line, stream) => s.exec.emit(line, stream),
  });
  checkAborted(s.exec.signal);
  if (r.exitCode !== 0) throw new TetherError('helm_failed', failureMessage('helm upgrade', r));
  let outputs;
  try {
    outputs = parseHelmRelease(r.stdout);
  } catch (err) {
    throw new TetherError('helm_failed', err instanceof Error ? err.message : String(err));
  }
  s.exec.emit(`release ${outputs.release} revision ${outputs.revision}: ${outputs.status}`);
  const o = { ...outputs } as Record<string, unknown>;
  return { outputs: o, lookup: plainLookup(o) };
}

async function uninstallHelm(spec: HelmSpec, s: StepContext): Promise<StepResult> {
  const { config, kube } = s.deps;
  const helmHome = join(config.workDir, 'helm');
  mkdirSync(helmHome, { recursive: true, mode: 0o700 });
  s.exec.emit(`helm uninstall ${spec.release} (namespace ${spec.namespace})`);
  const r = await runProcess(config.helmBin, planHelmUninstall({ spec, kubeconfig: kube.kubeconfigPath }), {
    env: helmEnv(helmHome),
    signal: s.exec.signal,
    killGraceMs: config.killGraceSeconds * 1000,
    log: s.exec.log,
    onLine: (line, stream) => s.exec.emit(line, stream),
  });
  checkAborted(s.exec.signal);
  if (r.exitCode !== 0) throw new TetherError('helm_failed', failureMessage('helm uninstall', r));
  const o: Record<string, unknown> = { release: spec.release, namespace: spec.namespace, uninstalled: true };
  return { outputs: o, lookup: plainLookup(o) };
}
