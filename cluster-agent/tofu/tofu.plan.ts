/**
 * The tofu invocations as pure functions: the backend override (state in a Kubernetes Secret),
 * the argument lists, the environment, and how `tofu output -json` splits into what may go to the
 * control plane and what must stay in the cluster.
 */
import { CommandFailure } from '../../common/errors.ts';

/** Written next to the module; `_override` so it replaces whatever backend the module declares. */
export const BACKEND_OVERRIDE_FILE = 'zzz_tether_backend_override.tf.json';

export interface BackendInput {
  stateName: string;
  namespace: string;
  /** In-cluster: the backend uses the pod's service account. */
  inCluster: boolean;
  kubeconfigPath: string;
}

export function backendOverride(b: BackendInput): string {
  const kubernetes: Record<string, unknown> = { secret_suffix: b.stateName, namespace: b.namespace };
  if (b.inCluster) kubernetes.in_cluster_config = true;
  else kubernetes.config_path = b.kubeconfigPath;
  return `${JSON.stringify({ terraform: { backend: { kubernetes } } }, null, 2)}\n`;
}

/** The Secret the kubernetes backend keeps the state in (workspace "default"). */
export const stateSecretName = (stateName: string) => `tfstate-default-${stateName}`;
/** The Secret the agent writes the module's outputs to (sensitive ones only live there). */
export const outputsSecretName = (stateName: string) => `${stateName}-outputs`;

export const tofuInitArgs = (): string[] => ['init', '-input=false', '-no-color'];

export function tofuApplyArgs(varFile?: string): string[] {
  return ['apply', '-auto-approve', '-input=false', '-no-color', ...(varFile ? [`-var-file=${varFile}`] : [])];
}

export function tofuDestroyArgs(varFile?: string): string[] {
  return ['destroy', '-auto-approve', '-input=false', '-no-color', ...(varFile ? [`-var-file=${varFile}`] : [])];
}

export const tofuOutputArgs = (): string[] => ['output', '-json', '-no-color'];

/** The cluster the agent runs in, as its modules get it (with the agent's own identity). */
export type TofuCluster =
  /** In a Pod: the service's address; the provider reads the ServiceAccount's token and CA files. */
  | { inCluster: true; serviceHost?: string; servicePort?: string }
  /** Outside a Pod: the agent's kubeconfig file. */
  | { inCluster: false; kubeconfigPath: string };

export interface TofuEnvInput {
  cliConfigFile?: string;
  pluginCacheDir?: string;
  cluster?: TofuCluster;
}

/**
 * tofu's environment (on top of the allow-listed base): no prompts, no checkpoint calls, the
 * provider mirror and cache when configured, and the cluster the agent runs in, so that
 * `provider "kubernetes" {}` and `provider "helm" {}` without arguments manage it: in a Pod the
 * in-cluster variables (KUBERNETES_SERVICE_HOST/PORT; the providers then use the ServiceAccount),
 * outside one the agent's kubeconfig (KUBE_CONFIG_PATH, read by the kubernetes and helm providers 2.x; KUBECONFIG, read by the 1.x providers (the tests' pinned 1.13.4) and by tools).
 */
export function tofuEnv(e: TofuEnvInput): Record<string, string> {
  const c = e.cluster;
  return {
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    ...(e.cliConfigFile ? { TF_CLI_CONFIG_FILE: e.cliConfigFile } : {}),
    ...(e.pluginCacheDir ? { TF_PLUGIN_CACHE_DIR: e.pluginCacheDir } : {}),
    ...(c?.inCluster === true && c.serviceHost ? { KUBERNETES_SERVICE_HOST: c.serviceHost } : {}),
    ...(c?.inCluster === true && c.servicePort ? { KUBERNETES_SERVICE_PORT: c.servicePort } : {}),
    ...(c?.inCluster === false ? { KUBE_CONFIG_PATH: c.kubeconfigPath, KUBECONFIG: c.kubeconfigPath } : {}),
  };
}

/** Said when `tofu init` could not install providers: how to give the agent a mirror. */
export const TOFU_MIRROR_HINT =
  'tofu init could not install the providers of the module from their registry. In a cluster without access to the registry, ' +
  'give the agent a provider mirror: a tofu CLI configuration with a provider_installation block ' +
  '(filesystem_mirror { path = "..." } on a mounted volume, or network_mirror { url = "https://..." }) ' +
  'passed with --tofu-cli-config-file (env TF_CLI_CONFIG_FILE), and a writable plugin cache with ' +
  '--tofu-plugin-cache-dir (env TF_PLUGIN_CACHE_DIR); see "Air-gapped clusters" in docs/cluster-agent.md';

const PROVIDER_INSTALL_FAILED = [
  /Failed to query available provider packages/i,
  /Failed to install provider/i,
  /Failed to resolve provider packages/i,
  /could not connect to registry/i,
  /was not found in any of the search locations/i,
];

/** The hint for a failed `tofu init` whose output says providers could not be installed. */
export function tofuInitHint(stderr: string): string | undefined {
  return PROVIDER_INSTALL_FAILED.some((re) => re.test(stderr)) ? TOFU_MIRROR_HINT : undefined;
}

export interface SplitOutputs {
  /** Non-sensitive outputs: these go to the control plane. */
  plain: Record<string, unknown>;
  /** Sensitive outputs as strings (JSON for non-strings): these stay in the cluster. */
  sensitive: Record<string, string>;
}

/** Splits `tofu output -json` into plain and sensitive outputs. */
export function splitOutputs(stdout: string): SplitOutputs {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout.trim() === '' ? '{}' : stdout);
  } catch {
    throw new CommandFailure('tofu_failed', 'tofu output -json did not print JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CommandFailure('tofu_failed', 'tofu output -json did not print an object');
  const plain: Record<string, unknown> = {};
  const sensitive: Record<string, string> = {};
  for (const [name, o] of Object.entries(parsed as Record<string, { sensitive?: unknown; value?: unknown }>)) {
    if (!/^[-._a-zA-Z0-9]+$/.test(name)) throw new CommandFailure('tofu_invalid', `output "${name}" cannot be stored as a Secret key`);
    if (o?.sensitive === false) plain[name] = o.value ?? null;
    else sensitive[name] = typeof o?.value === 'string' ? o.value : JSON.stringify(o?.value ?? null);
  }
  return { plain, sensitive };
}

/** Values as tofu reads them from a .tfvars.json file. */
export function varsFile(vars: Record<string, unknown>): string {
  return `${JSON.stringify(vars)}\n`;
}

/** A state lock as tofu reports it when it cannot take it ("Lock Info:" of the error). */
export interface StateLock {
  id: string;
  /** Epoch ms of the lock's creation, when tofu printed a time that parses. */
  createdAt?: number;
  who?: string;
  operation?: string;
}

/**
 * The lock named in tofu's "Error acquiring the state lock" output, or undefined when the output
 * is not that error (or names no usable lock ID).
 */
export function parseStateLock(stderr: string): StateLock | undefined {
  if (!/Error acquiring the state lock/i.test(stderr) || !/Lock Info:/i.test(stderr)) return undefined;
  const field = (name: string) => new RegExp(`^\\s*${name}:[ \\t]*(.*?)\\s*$`, 'mi').exec(stderr.slice(stderr.search(/Lock Info:/i)))?.[1];
  const id = field('ID');
  // A UUID in practice; never anything that could be read as an option.
  if (!id || !/^[0-9a-zA-Z][-0-9a-zA-Z_.]{0,127}$/.test(id)) return undefined;
  const created = field('Created');
  const createdAt = created ? parseGoTime(created) : undefined;
  const who = field('Who');
  const operation = field('Operation');
  return { id, ...(createdAt !== undefined ? { createdAt } : {}), ...(who ? { who } : {}), ...(operation ? { operation } : {}) };
}

/** Go's `time.Time.String()` ("2026-11-23 11:06:48.123456789 +0000 UTC") or RFC 3339, as epoch ms. */
export function parseGoTime(s: string): number | undefined {
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?/.exec(s.trim());
  if (!m) return undefined;
  const frac = (m[3] ?? '').slice(0, 3).padEnd(3, '0');
  const tz = !m[4] || m[4] === 'Z' ? 'Z' : m[4].includes(':') ? m[4] : `${m[4].slice(0, 3)}:${m[4].slice(3)}`;
  const t = Date.parse(`${m[1]}T${m[2]}.${frac}${tz}`);
  return Number.isNaN(t) ? undefined : t;
}

export type LockVerdict = { stale: true; reason: string } | { stale: false; reason: string };

/**
 * Whether a state lock may be force-unlocked. The agent runs one tofu command per state at a time
 * (in-process mutex) and the chart runs one pod (Recreate), so while it holds the state's mutex,
 * the only possible holder of a lock created before this process started is a run of a previous
 * agent process: dead, the lock stale. A lock created since (or of unknown age) may be live.
 */
export function staleLockVerdict(lock: StateLock, agentStartedAt: number): LockVerdict {
  if (lock.createdAt === undefined) return { stale: false, reason: `lock ${lock.id} has no creation time tofu printed that could be read` };
  const created = new Date(lock.createdAt).toISOString();
  const started = new Date(agentStartedAt).toISOString();
  if (lock.createdAt < agentStartedAt) return { stale: true, reason: `lock ${lock.id} was created at ${created}, before this agent process started (${started}): its holder died with a previous agent process` };
  return { stale: false, reason: `lock ${lock.id} was created at ${created}, after this agent process started (${started}): it may belong to a live run` };
}

export const tofuForceUnlockArgs = (lockId: string): string[] => ['force-unlock', '-force', '-no-color', lockId];

/** Diagnostics tofu prints when the module or its variables are wrong (the same input fails the same way). */
const TOFU_INVALID = [
  /Error: Invalid value for (input )?variable/i,
  /Error: No value for required variable/i,
  /Error: Reference to undeclared/i,
  /Error: Invalid reference/i,
  /Error: Unsupported (argument|attribute|block type)/i,
  /Error: Missing required argument/i,
  /Error: Argument or block definition required/i,
  /Error: Invalid (expression|function argument|character|block definition|count argument|for_each argument|template interpolation value)/i,
  /Error: Call to unknown function/i,
  /Error: Unclosed configuration block/i,
  /Error: Unsuitable value type/i,
  /Error: Incorrect attribute value type/i,
  /Error: Output refers to sensitive values/i,
  /Error: Variables not allowed/i,
  /Error: Cycle: /i,
  /does not have a provider named/i,
  /Error: Module not installed/i,
  /Error: Unreadable module directory/i,
];

/**
 * How a failed tofu run is classified: the module or its variables are wrong (`tofu_invalid`,
 * permanent) or something around it failed (`tofu_failed`, transient: a registry or provider API
 * unreachable, a state lock held).
 */
export function tofuFailureCode(stderr: string): 'tofu_invalid' | 'tofu_failed' {
  return TOFU_INVALID.some((re) => re.test(stderr)) ? 'tofu_invalid' : 'tofu_failed';
}
