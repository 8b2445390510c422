/**
 * The helm invocation as a pure function of the spec: what `helm upgrade --install` gets, and how
 * its JSON answer becomes the command's outputs. Every user-given value travels as `--flag=value`
 * or after `--`, so none can become an option.
 */
import type { HelmSpec } from '../common/specs.ts';

export interface HelmPlanInput {
  spec: HelmSpec;
  kubeconfig: string;
  /** Local chart folder (git charts, already resolved inside the checkout). */
  chartPath?: string;
  /** 0600 values file, when there are values. */
  valuesFile?: string;
}

export const HELM_HISTORY_MAX = 10;

/** The chart argument plus the flags that say where it comes from. */
export function chartArgs(input: Pick<HelmPlanInput, 'spec' | 'chartPath'>): { flags: string[]; chart: string } {
  const c = input.spec.chart;
  if ('repo' in c) return { flags: [`--repo=${c.repo}`, ...(c.version ? [`--version=${c.version}`] : [])], chart: c.name };
  if ('oci' in c) return { flags: c.version ? [`--version=${c.version}`] : [], chart: c.oci };
  if (!input.chartPath) throw new Error('a git chart needs its checked-out path');
  return { flags: [], chart: input.chartPath };
}

export function planHelmUpgrade(input: HelmPlanInput): string[] {
  const { spec } = input;
  const { flags, chart } = chartArgs(input);
  return [
    'upgrade',
    '--install',
    `--namespace=${spec.namespace}`,
    `--kubeconfig=${input.kubeconfig}`,
    ...(spec.createNamespace ? ['--create-namespace'] : []),
    ...(spec.wait ? ['--wait'] : []),
    ...(spec.timeoutSeconds ? [`--timeout=${spec.timeoutSeconds}s`] : []),
    `--history-max=${HELM_HISTORY_MAX}`,
    '--output=json',
    ...flags,
    ...(input.valuesFile ? [`--values=${input.valuesFile}`] : []),
    '--',
    spec.release,
    chart,
  ];
}

/** `helm uninstall` of the spec's release; a release that does not exist counts as uninstalled. */
export function planHelmUninstall(input: { spec: HelmSpec; kubeconfig: string }): string[] {
  const { spec } = input;
  return [
    'uninstall',
    `--namespace=${spec.namespace}`,
    `--kubeconfig=${input.kubeconfig}`,
    '--ignore-not-found',
    ...(spec.wait ? ['--wait'] : []),
    ...(spec.timeoutSeconds ? [`--timeout=${spec.timeoutSeconds}s`] : []),
    '--',
    spec.release,
  ];
}

/** Environment for helm: its caches and config in the agent's work dir (the root filesystem is read-only). */
export function helmEnv(helmHome: string): Record<string, string> {
  return {
    HELM_CACHE_HOME: `${helmHome}/cache`,
    HELM_CONFIG_HOME: `${helmHome}/config`,
    HELM_DATA_HOME: `${helmHome}/data`,
  };
}

export interface HelmOutputs {
  release: string;
  namespace: string;
  revision: number;
  status: string;
  chart?: string;
  chartVersion?: string;
  appVersion?: string;
}

/**
 * Picks the outputs from `helm upgrade -o json`. Only these fields: the JSON also holds the
 * release's values (`config`), which may be secret.
 */
export function parseHelmRelease(stdout: string): HelmOutputs {
  let r: {
    name?: unknown;
    namespace?: unknown;
    version?: unknown;
    info?: { status?: unknown };
    chart?: { metadata?: { name?: unknown; version?: unknown; appVersion?: unknown } };
  };
  try {
    r = JSON.parse(stdout.slice(stdout.indexOf('{')));
  } catch {
    throw new Error('helm did not print a release as JSON');
  }
  if (typeof r.name !== 'string' || typeof r.version !== 'number') throw new Error('helm printed an unexpected release document');
  const meta = r.chart?.metadata;
  return {
    release: r.name,
    namespace: typeof r.namespace === 'string' ? r.namespace : '',
    revision: r.version,
    status: typeof r.info?.status === 'string' ? r.info.status : 'unknown',
    ...(typeof meta?.name === 'string' ? { chart: meta.name } : {}),
    ...(typeof meta?.version === 'string' ? { chartVersion: meta.version } : {}),
    ...(typeof meta?.appVersion === 'string' ? { appVersion: meta.appVersion } : {}),
  };
}
