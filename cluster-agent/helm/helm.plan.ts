/**
 * The helm invocation as a pure function of the spec: what `helm upgrade --install` gets, and how
 * its JSON answer becomes the command's outputs. Every user-given value travels as `--flag=value`
 * or after `--`, so none can become an option.
 */
import type { HelmSpec } from '../../common/specs.ts';

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

/**
 * The description Tether gives every revision it makes (`helm history` shows it): a revision
 * with another description (`Rollback to 1`, `Upgrade complete` of a hand-run upgrade) was not
 * made by Tether, which the helm diff reports as drift.
 */
export const TETHER_HELM_DESCRIPTION = 'Applied by tether';

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
    `--description=${TETHER_HELM_DESCRIPTION}`,
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

/** What helm says when a release is `pending-*` (an install/upgrade/rollback never finished). */
export const isHelmOperationInProgress = (stderr: string): boolean => /another operation \(install\/upgrade\/rollback\) is in progress/i.test(stderr);

const target = (input: { spec: HelmSpec; kubeconfig: string }) => [`--namespace=${input.spec.namespace}`, `--kubeconfig=${input.kubeconfig}`];

/** `helm status -o json` (captured, never streamed: it holds the values). */
export const planHelmStatus = (input: { spec: HelmSpec; kubeconfig: string }): string[] => ['status', ...target(input), '--output=json', '--', input.spec.release];

/** `helm history -o json`. */
export const planHelmHistory = (input: { spec: HelmSpec; kubeconfig: string }): string[] => [
  'history',
  ...target(input),
  '--output=json',
  `--max=${HELM_HISTORY_MAX + 1}`,
  '--',
  input.spec.release,
];

export const planHelmRollback = (input: { spec: HelmSpec; kubeconfig: string }, revision: number): string[] => [
  'rollback',
  ...target(input),
  `--history-max=${HELM_HISTORY_MAX}`,
  '--',
  input.spec.release,
  String(revision),
];

export interface HelmReleaseState {
  status: string;
  revision: number;
  /** Epoch ms of `info.last_deployed` (when the pending operation began). */
  lastDeployedAt?: number;
}

/** `helm status -o json`, reduced to what the recovery needs. */
export function parseHelmStatus(stdout: string): HelmReleaseState {
  let r: { version?: unknown; info?: { status?: unknown; last_deployed?: unknown } };
  try {
    r = JSON.parse(stdout.slice(stdout.indexOf('{')));
  } catch {
    throw new Error('helm status did not print JSON');
  }
  const at = typeof r.info?.last_deployed === 'string' ? Date.parse(r.info.last_deployed) : Number.NaN;
  return {
    status: typeof r.info?.status === 'string' ? r.info.status : 'unknown',
    revision: typeof r.version === 'number' ? r.version : 0,
    ...(Number.isNaN(at) ? {} : { lastDeployedAt: at }),
  };
}

export interface HelmRevision {
  revision: number;
  status: string;
}

/** `helm history -o json`: revision numbers and statuses. */
export function parseHelmHistory(stdout: string): HelmRevision[] {
  let r: unknown;
  try {
    r = JSON.parse(stdout.slice(stdout.search(/[[{]/)));
  } catch {
    throw new Error('helm history did not print JSON');
  }
  if (!Array.isArray(r)) throw new Error('helm history did not print a list');
  return r.flatMap((h: { revision?: unknown; status?: unknown }) => (typeof h?.revision === 'number' && typeof h.status === 'string' ? [{ revision: h.revision, status: h.status }] : []));
}

export type HelmRecovery =
  | { action: 'none'; reason: string }
  | { action: 'rollback'; revision: number; reason: string }
  | { action: 'uninstall'; reason: string };

/**
 * What to do with a release helm calls busy. Like tofu's state lock: the agent runs one helm
 * command per release at a time (in-process mutex) and the chart one pod (Recreate), so a
 * `pending-*` release whose operation began before this process started was left by a previous,
 * dead agent process: roll back to the last good revision, or uninstall a release that never had
 * one. A pending operation begun since (or of unknown age) may be live: left alone.
 */
export function helmRecovery(state: HelmReleaseState, history: HelmRevision[], agentStartedAt: number): HelmRecovery {
  if (!state.status.startsWith('pending-')) return { action: 'none', reason: `release is ${state.status}, not pending` };
  if (state.lastDeployedAt === undefined) return { action: 'none', reason: `release is ${state.status} since an unknown time: it may belong to a live run` };
  const since = new Date(state.lastDeployedAt).toISOString();
  const started = new Date(agentStartedAt).toISOString();
  if (state.lastDeployedAt >= agentStartedAt) return { action: 'none', reason: `release is ${state.status} since ${since}, after this agent process started (${started}): it may belong to a live run` };
  const stale = `release is ${state.status} since ${since}, before this agent process started (${started}): its operation died with a previous agent process`;
  const good = history
    .filter((h) => h.revision < state.revision && (h.status === 'deployed' || h.status === 'superseded'))
    .reduce<number | undefined>((best, h) => (best === undefined || h.revision > best ? h.revision : best), undefined);
  if (good !== undefined) return { action: 'rollback', revision: good, reason: `${stale}; rolling back to revision ${good}` };
  return { action: 'uninstall', reason: `${stale}; no good revision to roll back to, uninstalling` };
}

/** What helm prints when its input is wrong: the chart, its templates, its values or what they render. */
const HELM_INVALID = [
  /parse error/i,
  /template: /,
  /execution error at/i,
  /error converting YAML to JSON/i,
  /YAML parse error/i,
  /values don't meet the specifications of the schema/i,
  /unable to build kubernetes objects from release manifest/i,
  /resource mapping not found/i,
  /no matches for kind/i,
  /error validating data/i,
  /is invalid: /i,
  /chart requires kubeVersion/i,
  /Chart\.yaml file is missing/i,
  /not a valid chart/i,
  /found in Chart\.yaml, but missing in charts\/ directory/i,
  /path ".*" not found/i,
];

/**
 * How a failed helm run is classified: its input is wrong (`helm_invalid`, permanent) or
 * something around it failed (`helm_failed`, transient: the cluster unreachable, a release busy,
 * a timeout waiting for resources).
 */
export function helmFailureCode(stderr: string): 'helm_invalid' | 'helm_failed' {
  return HELM_INVALID.some((re) => re.test(stderr)) ? 'helm_invalid' : 'helm_failed';
}
