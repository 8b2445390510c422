/**
 * The `diff` command for helm: changes nothing. The release's state comes from `helm history`
 * (missing, not deployed, or its deployed revision not made by Tether); its objects from
 * `helm template` of the spec (same chart and values resolution as a `helm` command, secretRefs
 * resolved in the agent into a 0600 file), each compared with the live object as the manifest
 * diff does, on the fields helm's field manager owns (see diff.plan.ts). The rendered output holds
 * the values: it is captured, never streamed, and Secret values are registered with the masker.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CommandFailure } from '../../common/errors.ts';
import type { HelmDiffTarget } from '../../common/specs.ts';
import { diffOne, maskSecret } from '../manifest/diff.executor.ts';
import { summarize, type DiffResource } from '../manifest/diff.plan.ts';
import { orderForApply, parseManifests } from '../manifest/manifest.plan.ts';
import { failureMessage, runProcess, type RunResult } from '../process/run.ts';
import { checkAborted, plainLookup, type StepContext, type StepResult } from '../steps/step.ts';
import { HELM_FIELD_MANAGER, HELM_OWNED_OPERATIONS, isReleaseNotFound, parseHistoryDescriptions, planHelmTemplate, releaseVerdict } from './diff.plan.ts';
import { helmEnv, helmFailureCode, planHelmHistory } from './helm.plan.ts';
import { prepareHelmInputs } from './helm.executor.ts';

function helm(s: StepContext, args: string[]): Promise<RunResult> {
  const helmHome = join(s.deps.config.workDir, 'helm');
  mkdirSync(helmHome, { recursive: true, mode: 0o700 });
  return runProcess(s.deps.config.helmBin, args, {
    env: helmEnv(helmHome),
    signal: s.exec.signal,
    killGraceMs: s.deps.config.killGraceSeconds * 1000,
    log: s.exec.log,
    captureStdout: true,
    onLine: (line, st) => s.exec.emit(line, st),
  });
}

export async function executeHelmDiff(spec: HelmDiffTarget, s: StepContext): Promise<StepResult> {
  const { kube } = s.deps;
  const kubeconfig = kube.kubeconfigPath;
  const full = { ...spec, action: undefined };

  const hist = await helm(s, planHelmHistory({ spec: full, kubeconfig }));
  checkAborted(s.exec.signal);
  let history;
  if (hist.exitCode !== 0) {
    if (!isReleaseNotFound(hist.stderrTail)) throw new CommandFailure(helmFailureCode(hist.stderrTail), failureMessage('helm history', hist));
    history = 'missing' as const;
  } else {
    try {
      history = parseHistoryDescriptions(hist.stdout);
    } catch (err) {
      throw new CommandFailure('helm_failed', err instanceof Error ? err.message : String(err));
    }
  }
  const release = releaseVerdict({ namespace: spec.namespace, name: spec.release }, history);
  s.exec.emit(`release ${spec.namespace}/${spec.release}: ${release.status}${release.diff ? ` (${release.diff.trimEnd()})` : ''}`);

  const { chartPath, valuesFile } = await prepareHelmInputs(spec, s);
  s.exec.emit(`helm template ${spec.release} (namespace ${spec.namespace})`);
  const rendered = await helm(s, planHelmTemplate({ spec, kubeConfig: kubeconfig, chartPath, valuesFile }));
  checkAborted(s.exec.signal);
  if (rendered.exitCode !== 0) throw new CommandFailure(helmFailureCode(rendered.stderrTail), failureMessage('helm template', rendered));
  let objects;
  try {
    objects = parseManifests(rendered.stdout);
  } catch (err) {
    throw new CommandFailure('helm_failed', `helm template printed no manifests that parse: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const o of objects) maskSecret(o, s);

  const resources: DiffResource[] = [release];
  for (const o of orderForApply(objects)) {
    checkAborted(s.exec.signal);
    resources.push(await diffOne(kube.objects, o, spec.namespace, s, { manager: HELM_FIELD_MANAGER, operations: HELM_OWNED_OPERATIONS }));
  }
  const summary = summarize(resources);
  s.exec.emit(`diff: ${summary.inSync} in sync, ${summary.drifted} drifted, ${summary.missing} missing, ${summary.error} error`);
  const outputs: Record<string, unknown> = { release: spec.release, namespace: spec.namespace, resources, summary };
  return { outputs, lookup: plainLookup(outputs) };
}
