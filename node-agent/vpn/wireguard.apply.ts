/**
 * Applies a rendered WireGuard interface to this host: creates the interface (kernel
 * `ip link add … type wireguard`, else the userspace wireguard-go), loads the configuration with
 * `wg syncconf` (unchanged peers keep their sessions), then sets address, state and routes with `ip`.
 */
import { writeFileAtomic } from '../../common/files.ts';
import type { Logger } from '../../common/logger.ts';
import { CommandFailed, mustRun, type Runner } from '../process/run.ts';
import { parseLinkState, planLink, type DesiredLink, type LinkState } from './wireguard.render.ts';

export interface ApplyOptions {
  link: DesiredLink;
  /** wg(8) configuration text (holds the private key: written 0600, never logged). */
  conf: string;
  confPath: string;
  wireguardGo: string;
  run: Runner;
  log: Logger;
}

export interface ApplyResult {
  created: 'kernel' | 'userspace' | null;
  linkChanges: string[][];
}

export async function readLink(run: Runner, ifname: string): Promise<LinkState> {
  const addr = await run('ip', ['-j', 'address', 'show', 'dev', ifname]);
  if (!addr.ok) return { exists: false, up: false, addresses: [], routes: [] };
  const route = await mustRun(run, 'ip', ['-j', 'route', 'show', 'dev', ifname]);
  return parseLinkState(addr.stdout, route.stdout);
}

/** Creates the interface if it does not exist; which implementation ended up serving it. */
export async function ensureInterface(run: Runner, ifname: string, wireguardGo: string, log: Logger): Promise<ApplyResult['created']> {
  if ((await run('ip', ['link', 'show', 'dev', ifname])).ok) return null;
  const kernel = await run('ip', ['link', 'add', 'dev', ifname, 'type', 'wireguard']);
  if (kernel.ok) {
    log.info({ ifname }, 'WireGuard interface created (kernel)');
    return 'kernel';
  }
  log.info({ ifname, reason: kernel.stderr.trim() }, 'no kernel WireGuard; starting the userspace implementation');
  // wireguard-go daemonises itself (its stdio goes to /dev/null unless LOG_LEVEL is set) and serves
  // the interface through /var/run/wireguard/<ifname>.sock.
  await mustRun(run, wireguardGo, [ifname], { env: { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' }, timeoutMs: 15_000, leavesDaemon: true });
  for (let i = 0; i < 50; i++) {
    if ((await run('ip', ['link', 'show', 'dev', ifname])).ok && (await run('wg', ['show', ifname, 'listen-port'])).ok) {
      log.info({ ifname, implementation: wireguardGo }, 'WireGuard interface created (userspace)');
      return 'userspace';
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new CommandFailed(wireguardGo, [ifname], { ok: false, exitCode: 0, stdout: '', stderr: `${ifname} did not appear within 5 s`, missing: false });
}

export async function applyInterface(o: ApplyOptions): Promise<ApplyResult> {
  const { run, link } = o;
  const created = await ensureInterface(run, link.ifname, o.wireguardGo, o.log);
  writeFileAtomic(o.confPath, o.conf, 0o600);
  await mustRun(run, 'wg', ['syncconf', link.ifname, o.confPath]);
  const changes = planLink(await readLink(run, link.ifname), link);
  for (const args of changes) await mustRun(run, 'ip', args);
  return { created, linkChanges: changes };
}
