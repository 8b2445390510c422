// Locates the pinned test toolchain binaries built by test/toolchain/install.sh.
//
// Resolution order for a tool: env var TETHER_<NAME>_BIN (e.g. TETHER_KUBE_APISERVER_BIN), else
// ${TETHER_CACHE:-$HOME/.cache/tether}/<tool>-<version>/<tool> with <version> read from
// test/toolchain/versions.env. Throws a clear Error when the binary is missing.
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ToolName = 'etcd' | 'kube-apiserver' | 'helm' | 'tofu' | 'kubectl' | 'kube-controller-manager' | 'kube-scheduler' | 'kubelet' | 'kube-proxy';

export const TOOL_NAMES: readonly ToolName[] = ['etcd', 'kube-apiserver', 'kubectl', 'helm', 'tofu', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy'];

/** Key in versions.env holding each tool's pinned version. */
const VERSION_KEYS: Record<ToolName, string> = {
  etcd: 'ETCD_VERSION',
  'kube-apiserver': 'KUBERNETES_VERSION',
  kubectl: 'KUBERNETES_VERSION',
  'kube-controller-manager': 'KUBERNETES_VERSION',
  'kube-scheduler': 'KUBERNETES_VERSION',
  kubelet: 'KUBERNETES_VERSION',
  'kube-proxy': 'KUBERNETES_VERSION',
  helm: 'HELM_VERSION',
  tofu: 'TOFU_VERSION',
};

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VERSIONS_FILE = join(REPO_ROOT, 'test', 'toolchain', 'versions.env');
const INSTALL_HINT = 'run `bash test/toolchain/install.sh` from the repo root';

let cachedVersions: Record<string, string> | undefined;

/** Parses versions.env (plain KEY=VALUE lines; `#` comments; optional surrounding quotes). */
export function readVersions(file: string = VERSIONS_FILE): Record<string, string> {
  if (file === VERSIONS_FILE && cachedVersions) return cachedVersions;
  const out: Record<string, string> = {};
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let value = (m[2] ?? '').trim();
    if (/^(['"]).*\1$/.test(value)) value = value.slice(1, -1);
    out[m[1] as string] = value;
  }
  if (file === VERSIONS_FILE) cachedVersions = out;
  return out;
}

/** Pinned version of a tool, e.g. toolVersion('helm') === 'v3.19.5'. */
export function toolVersion(name: ToolName): string {
  const key = VERSION_KEYS[name];
  if (!key) throw new Error(`unknown toolchain tool '${String(name)}' (known: ${TOOL_NAMES.join(', ')})`);
  const v = readVersions()[key];
  if (!v) throw new Error(`${key} is not set in ${VERSIONS_FILE}`);
  return v;
}

/** Root of the toolchain cache: $TETHER_CACHE or ~/.cache/tether. */
export function cacheRoot(): string {
  const fromEnv = process.env['TETHER_CACHE'];
  return fromEnv && fromEnv !== '' ? fromEnv : join(homedir(), '.cache', 'tether');
}

/** Name of the env var that overrides a tool's path: kube-apiserver -> TETHER_KUBE_APISERVER_BIN. */
export function toolEnvVar(name: ToolName): string {
  return `TETHER_${name.toUpperCase().replace(/-/g, '_')}_BIN`;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of a pinned toolchain binary; throws if it is not installed. */
export function toolPath(name: ToolName): string {
  const envVar = toolEnvVar(name);
  const fromEnv = process.env[envVar];
  if (fromEnv && fromEnv !== '') {
    if (!isExecutable(fromEnv)) {
      throw new Error(`${envVar}=${fromEnv} is not an executable file; unset it or ${INSTALL_HINT}`);
    }
    return fromEnv;
  }
  const version = toolVersion(name);
  const path = join(cacheRoot(), `${name}-${version}`, name);
  if (!isExecutable(path)) {
    throw new Error(
      `test toolchain binary '${name}' ${version} not found at ${path}; ` +
        `${INSTALL_HINT} (or \`bash test/toolchain/install.sh ${name}\`), or set ${envVar}`,
    );
  }
  return path;
}

// ------------------------------------------------------------------ OpenTofu providers

/** OpenTofu providers built by test/toolchain/providers.sh into a filesystem mirror. */
export type TofuProviderName = 'random' | 'kubernetes';
export const TOFU_PROVIDER_NAMES: readonly TofuProviderName[] = ['random', 'kubernetes'];
const PROVIDERS_HINT = 'run `bash test/toolchain/providers.sh` from the repo root';

/** Pinned registry version of a provider, e.g. tofuProviderVersion('kubernetes') === '1.13.4'. */
export function tofuProviderVersion(name: TofuProviderName): string {
  const key = `TOFU_PROVIDER_${name.toUpperCase()}_VERSION`;
  const v = readVersions()[key];
  if (!v) throw new Error(`${key} is not set in ${VERSIONS_FILE}`);
  return v;
}

/**
 * Root of the filesystem provider mirror (tofu's unpacked layout:
 * <host>/hashicorp/<name>/<version>/linux_amd64/terraform-provider-<name>_v<version>):
 * $TETHER_TOFU_PROVIDER_MIRROR, else <cache>/tofu-providers/mirror. Throws when a pinned
 * provider is missing from it.
 */
export function tofuProviderMirror(): string {
  const fromEnv = process.env['TETHER_TOFU_PROVIDER_MIRROR'];
  const mirror = fromEnv && fromEnv !== '' ? fromEnv : join(cacheRoot(), 'tofu-providers', 'mirror');
  for (const name of TOFU_PROVIDER_NAMES) {
    const version = tofuProviderVersion(name);
    for (const host of ['registry.opentofu.org', 'registry.terraform.io']) {
      const bin = join(mirror, host, 'hashicorp', name, version, 'linux_amd64', `terraform-provider-${name}_v${version}`);
      if (!isExecutable(bin)) throw new Error(`tofu provider ${host}/hashicorp/${name} ${version} not found at ${bin}; ${PROVIDERS_HINT}, or set TETHER_TOFU_PROVIDER_MIRROR`);
    }
  }
  return mirror;
}
