/**
 * The tofu invocations as pure functions: the backend override (state in a Kubernetes Secret),
 * the argument lists, the environment, and how `tofu output -json` splits into what may go to the
 * control plane and what must stay in the cluster.
 */
import { TetherError } from '../common/errors.ts';

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

export interface TofuEnvInput {
  cliConfigFile?: string;
  pluginCacheDir?: string;
}

export function tofuEnv(e: TofuEnvInput): Record<string, string> {
  return {
    TF_IN_AUTOMATION: '1',
    TF_INPUT: '0',
    CHECKPOINT_DISABLE: '1',
    ...(e.cliConfigFile ? { TF_CLI_CONFIG_FILE: e.cliConfigFile } : {}),
    ...(e.pluginCacheDir ? { TF_PLUGIN_CACHE_DIR: e.pluginCacheDir } : {}),
  };
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
    throw new TetherError('tofu_error', 'tofu output -json did not print JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TetherError('tofu_error', 'tofu output -json did not print an object');
  const plain: Record<string, unknown> = {};
  const sensitive: Record<string, string> = {};
  for (const [name, o] of Object.entries(parsed as Record<string, { sensitive?: unknown; value?: unknown }>)) {
    if (!/^[-._a-zA-Z0-9]+$/.test(name)) throw new TetherError('tofu_error', `output "${name}" cannot be stored as a Secret key`);
    if (o?.sensitive === false) plain[name] = o.value ?? null;
    else sensitive[name] = typeof o?.value === 'string' ? o.value : JSON.stringify(o?.value ?? null);
  }
  return { plain, sensitive };
}

/** Values as tofu reads them from a .tfvars.json file. */
export function varsFile(vars: Record<string, unknown>): string {
  return `${JSON.stringify(vars)}\n`;
}
