/** Reads what the install plan decides on: files under the root prefix, and this host's modules, sysctls, tools and units. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { moduleState } from '../preflight/preflight.checks.ts';
import { gatherModules } from '../preflight/preflight.facts.ts';
import { which } from '../process/which.ts';
import { runCommand, type Runner } from '../process/run.ts';
import { PLAN_FILES, SYSCTLS, type InstallFacts } from './install.plan.ts';

const readOrNull = (p: string) => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
};

export async function gatherInstallFacts(root: string, run: Runner = runCommand): Promise<InstallFacts> {
  const files = Object.fromEntries(PLAN_FILES.map((p) => [p, readOrNull(join(root, p))]));
  const mods = gatherModules('', os.release());
  const modulesActive: Record<string, boolean> = {};
  const modulesAvailable: Record<string, boolean> = {};
  for (const m of ['overlay', 'br_netfilter', 'wireguard']) {
    const s = moduleState(m, mods).state;
    modulesActive[m] = s === 'loaded' || s === 'builtin';
    modulesAvailable[m] = s !== 'absent';
  }
  const sysctls = Object.fromEntries(Object.keys(SYSCTLS).map((k) => [k, readOrNull(`/proc/sys/${k.replace(/\./g, '/')}`)?.trim() ?? null]));
  const binaries = Object.fromEntries(['containerd', 'kubelet', 'kubeadm', 'kubectl'].map((b) => [b, which(b) !== null]));
  const packageManager = which('apt-get') ? 'apt' : which('dnf') ? 'dnf' : null;
  const servicesEnabled: Record<string, boolean | null> = {};
  for (const unit of ['containerd', 'kubelet']) {
    const r = await run('systemctl', ['is-enabled', unit], { timeoutMs: 5000 });
    servicesEnabled[unit] = r.missing ? null : r.stdout.trim() === 'enabled' ? true : r.stdout.trim() ? false : null;
  }
  return { files, modulesActive, modulesAvailable, sysctls, binaries, packageManager, servicesEnabled, joined: readOrNull(join(root, '/etc/kubernetes/kubelet.conf')) !== null };
}
