/**
 * `tether-node`'s commands (commander): registration, the daemon, and the host commands
 * (preflight, install, VPN sync) that the daemon also runs when the control plane asks. Exit
 * codes: 0 ok (preflight: pass or warn), 1 a failure (preflight: a check failed), 2 bad usage or
 * configuration. A plain `tether-node agent [--config P]` does not come here: main.ts starts the
 * daemon without loading commander.
 */
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { HttpError } from '../../common/http-client.ts';
import { errorMessage } from '../../common/errors.ts';
import { ConfigError, configPath, controlPlaneUrls, loadNodeConfig, type NodeConfig } from '../config/node.config.ts';
import { DEFAULT_KUBERNETES_VERSION, VERSION } from '../version.ts';
import { commandLogger } from './command-log.ts';
import { runAgent } from './agent.command.ts';

// Everything else is imported inside the command that needs it: the daemon, which runs for months,
// then never loads (nor keeps in memory) registration, preflight or install code it may never run.
// The deployed build (scripts/build.sh) keeps these modules unevaluated until the import() runs.

class UsageError extends Error {}

const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const configOption = ['--config <path>', 'configuration file (env TETHER_NODE_CONFIG; default /etc/tether/config.yaml)'] as const;
const load = (flag: string | undefined): NodeConfig => loadNodeConfig(configPath(flag));
const portArg = (name: string) => (v: string) => {
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`${name} must be a port number`);
  return Number(v);
};

const program = new Command('tether-node')
  .description('Tether node agent: registers this host, runs preflight/install/VPN commands from the control plane')
  .showHelpAfterError()
  .exitOverride();

program
  .command('register')
  .description('one time: generate a key here, trade the bootstrap token and a CSR for a certificate, write the configuration')
  .option('--token <token>', 'one-time bootstrap token (env TETHER_BOOTSTRAP_TOKEN)')
  .requiredOption('--aid <aid>', 'account id')
  .requiredOption('--control-plane <0|1>', 'whether this node runs the Kubernetes control plane')
  .requiredOption('--server <url>', 'control plane URL (https://); several replicas: comma-separated, the agent moves to the next when one fails')
  .option('--ca-file <file>', 'CA certificate of the control plane (default: the system CAs)')
  .option(...configOption)
  .option('--name <nid>', 'node id (default: chosen by the control plane)')
  .option('--state-dir <dir>', 'state folder (default /var/lib/tether, or next to a non-default config)')
  .option('--wg0-interface <name>', 'mesh interface name', 'wg0')
  .option('--wg1-interface <name>', 'user-access interface name', 'wg1')
  .option('--wg0-port <port>', 'mesh listen port', portArg('--wg0-port'), 51820)
  .option('--wg1-port <port>', 'user-access listen port', portArg('--wg1-port'), 51821)
  .option('--endpoint <address>', 'address peers reach this node at (default: the local address toward the control plane)')
  .option('--wireguard-go <path>', 'userspace WireGuard binary', 'wireguard-go')
  .option('--no-vpn', 'do not manage WireGuard on this node')
  .option('--heartbeat-interval-ms <ms>', 'heartbeat interval', (v) => Number(v))
  .option('--force', 'register again over an existing configuration')
  .action(async (o: { token?: string; aid: string; controlPlane: string; server: string; caFile?: string; config?: string; name?: string; stateDir?: string; wg0Interface: string; wg1Interface: string; wg0Port: number; wg1Port: number; endpoint?: string; wireguardGo: string; vpn: boolean; heartbeatIntervalMs?: number; force?: boolean }) => {
    const token = o.token ?? process.env.TETHER_BOOTSTRAP_TOKEN;
    if (!token) throw new UsageError('pass --token or set TETHER_BOOTSTRAP_TOKEN');
    if (o.controlPlane !== '0' && o.controlPlane !== '1') throw new UsageError('--control-plane must be 0 or 1');
    process.umask(0o077);
    const path = configPath(o.config);
    const { registerNode } = await import('../register/register.ts');
    const c = await registerNode(
      {
        configPath: path,
        token,
        aid: o.aid,
        controlPlane: o.controlPlane === '1',
        server: o.server,
        ...(o.caFile ? { caFile: o.caFile } : {}),
        ...(o.name ? { name: o.name } : {}),
        ...(o.stateDir ? { stateDir: o.stateDir } : {}),
        network: { manageVpn: o.vpn, wg0Interface: o.wg0Interface, wg1Interface: o.wg1Interface, wg0Port: o.wg0Port, wg1Port: o.wg1Port, wireguardGo: o.wireguardGo, ...(o.endpoint ? { endpointAddress: o.endpoint } : {}) },
        ...(o.heartbeatIntervalMs ? { heartbeatIntervalMs: o.heartbeatIntervalMs } : {}),
        ...(o.force ? { force: true } : {}),
      },
      commandLogger(),
    );
    out(`registered node ${c.nodeId} (agent ${c.agentId}) in cluster ${c.cluster}; configuration in ${path}`);
  });

program
  .command('agent')
  .description('run the daemon (SIGTERM stops it gracefully)')
  .option(...configOption)
  .action((o: { config?: string }) => runAgent(o.config));

program
  .command('preflight')
  .description("check this host's readiness (exit 0 pass/warn, 1 any fail)")
  .option('--json', 'print the report as JSON')
  .option(...configOption)
  .option('--server <url>', 'control plane to test (default: from the configuration)')
  .option('--ca-file <file>', 'CA of the control plane (default: from the configuration)')
  .option('--control-plane <0|1>', 'check as a control-plane node (default: from the configuration, else 0)')
  .action(async (o: { json?: boolean; config?: string; server?: string; caFile?: string; controlPlane?: string }) => {
    let c: NodeConfig | undefined;
    try {
      c = load(o.config);
    } catch (err) {
      if (o.config || !(err instanceof ConfigError)) throw err; // an explicit config must load; the default may be absent before register
    }
    const { readFileSync } = process.getBuiltinModule('node:fs'); // not import(): scripts/build.sh, built-ins
    const [{ runPreflight }, { renderReport }, { exitCodeFor }] = await Promise.all([import('../preflight/preflight.run.ts'), import('../preflight/preflight.report.ts'), import('../preflight/preflight.checks.ts')]);
    const caFile = o.caFile ?? c?.caFile;
    const server = o.server ?? c?.server;
    const report = await runPreflight({
      controlPlaneNode: o.controlPlane !== undefined ? o.controlPlane === '1' : (c?.controlPlane ?? false),
      wg: c?.network ?? { wg0: { interface: 'wg0', listenPort: 51820 }, wg1: { interface: 'wg1', listenPort: 51821 } },
      ...(server ? { server: { url: server, ...(caFile ? { caPem: readFileSync(caFile, 'utf8') } : {}) } } : {}),
    });
    out(o.json ? JSON.stringify(report, null, 2) : renderReport(report));
    process.exitCode = exitCodeFor(report);
  });

program
  .command('install')
  .description('prepare this host for Kubernetes and join (idempotent; --dry-run prints the plan)')
  .option('--dry-run', 'print the plan, change nothing')
  .option('--root <dir>', 'root prefix for the files written (host commands only run when it is /)', '/')
  .option(...configOption)
  .option('--kubernetes-version <v>', 'package repository line', DEFAULT_KUBERNETES_VERSION)
  .option('--node-ip <ip>', 'address the kubelet advertises (default: none)')
  .option('--join-endpoint <host:port>', 'API server to join')
  .option('--join-token <token>', 'kubeadm bootstrap token (env TETHER_JOIN_TOKEN)')
  .option('--ca-cert-hash <sha256:…>', 'discovery CA certificate hash')
  .option('--certificate-key <key>', 'control-plane certificate key (additional control-plane nodes)')
  .action(async (o: { dryRun?: boolean; root: string; config?: string; kubernetesVersion: string; nodeIp?: string; joinEndpoint?: string; joinToken?: string; caCertHash?: string; certificateKey?: string }) => {
    let c: Pick<NodeConfig, 'nodeId' | 'controlPlane'>;
    try {
      c = load(o.config);
    } catch (err) {
      if (!(err instanceof ConfigError) || !o.dryRun) throw err;
      c = { nodeId: 'unregistered', controlPlane: false }; // a dry run may precede register
    }
    const joinToken = o.joinToken ?? process.env.TETHER_JOIN_TOKEN;
    if (o.joinEndpoint && !(joinToken && o.caCertHash)) throw new UsageError('--join-endpoint needs --join-token (or TETHER_JOIN_TOKEN) and --ca-cert-hash');
    const { resolve } = process.getBuiltinModule('node:path'); // not import(): scripts/build.sh, built-ins
    const { runInstall } = await import('../install/install.command.ts');
    const r = await runInstall({
      config: c,
      root: resolve(o.root),
      dryRun: o.dryRun ?? false,
      kubernetesVersion: o.kubernetesVersion,
      ...(o.nodeIp ? { nodeIp: o.nodeIp } : {}),
      ...(o.joinEndpoint && joinToken && o.caCertHash ? { join: { apiServerEndpoint: o.joinEndpoint, token: joinToken, caCertHash: o.caCertHash, ...(o.certificateKey ? { certificateKey: o.certificateKey } : {}) } } : {}),
      onLine: (l) => out(l),
    });
    if (!o.dryRun) out(`install ${r.result.ok ? 'finished' : 'FAILED'}: ${r.result.steps.map((s) => `${s.id}=${s.status}`).join(' ')}`);
    process.exitCode = r.result.ok ? 0 : 1;
  });

const sync = program.command('sync').description('synchronise state with the control plane');
sync
  .command('vpn')
  .description('register WireGuard keys and apply wg0 (node mesh) and wg1 (user access) now')
  .option(...configOption)
  .action(async (o: { config?: string }) => {
    process.umask(0o077);
    const c = load(o.config);
    if (!c.network.manageVpn) throw new UsageError('this node does not manage its VPN (network.manageVpn is false in its configuration)');
    const [{ AgentClient }, { readCredentials }, { syncVpn }, { runCommand }] = await Promise.all([import('../../common/agent/agent-client.ts'), import('../daemon/certificate.ts'), import('../vpn/vpn.sync.ts'), import('../process/run.ts')]);
    const client = new AgentClient(controlPlaneUrls(c), readCredentials(c));
    try {
      const r = await syncVpn(c, client, runCommand, commandLogger());
      out(`${r.wg0.interface} ${r.wg0.address}: ${r.wg0.peers} node peer(s)${r.wg0.created ? ` (created, ${r.wg0.created})` : ''}`);
      out(`${r.wg1.interface} ${r.wg1.address}: ${r.wg1.peers} user peer(s)${r.wg1.created ? ` (created, ${r.wg1.created})` : ''}`);
    } finally {
      client.close();
    }
  });

program
  .command('status')
  .description('identity, certificate, control plane reachability and VPN state of this node')
  .option(...configOption)
  .option('--json', 'print JSON')
  .action(async (o: { config?: string; json?: boolean }) => {
    const c = load(o.config);
    const [{ readCredentials, certificateDue }, { collectVpnState }, { runCommand }, { checkServers, serverLines }, { lastServer }] = await Promise.all([import('../daemon/certificate.ts'), import('../vpn/vpn.state.ts'), import('../process/run.ts'), import('./status.servers.ts'), import('../daemon/server-record.ts')]);
    const { notAfter, due } = certificateDue(c);
    // Every configured control plane, each on its own connection; fine while one answers.
    const servers = await checkServers(controlPlaneUrls(c), readCredentials(c), lastServer(c.stateDir));
    const used = servers.find((s) => s.lastUsed) ?? servers[0]!;
    const reachable = servers.find((s) => s.reachable);
    const controlPlane = { reachable: reachable !== undefined, detail: (reachable ?? used).detail };
    const vpn = c.network.manageVpn ? await collectVpnState(c.network, runCommand, { keyDir: join(c.stateDir, 'wireguard') }) : {};
    const s = { nodeId: c.nodeId, agentId: c.agentId, accountId: c.accountId, cluster: c.cluster, controlPlaneNode: c.controlPlane, server: c.server, servers, certificate: { notAfter: notAfter.toISOString(), renewDue: due }, controlPlane, vpn, version: VERSION };
    const shown = serverLines(servers);
    process.exitCode = controlPlane.reachable ? 0 : 1;
    if (shown.error) process.stderr.write(`tether-node: ${shown.error}\n`);
    if (o.json) return out(JSON.stringify(s, null, 2));
    out(`node        ${c.nodeId} (agent ${c.agentId}, account ${c.accountId}, cluster ${c.cluster}${c.controlPlane ? ', control plane' : ''})`);
    for (const l of shown.lines) out(l);
    out(`certificate valid until ${notAfter.toISOString()}${due ? ' (renewal due)' : ''}`);
    for (const [role, v] of Object.entries(vpn) as [string, { interface: string; up: boolean; peers?: { handshakeAgeSeconds: number | null }[] }][]) {
      out(`${role.padEnd(11)} ${v.interface}: ${v.up ? `${v.peers?.length ?? 0} peer(s), ${v.peers?.filter((p) => p.handshakeAgeSeconds !== null && p.handshakeAgeSeconds < 180).length ?? 0} with a recent handshake` : 'down'}`);
    }
  });

program
  .command('logs')
  .description("the daemon's log (journalctl -u tether-node)")
  .option('-f, --follow', 'keep printing new lines')
  .option('-n, --lines <n>', 'lines to show', '200')
  .action(async (o: { follow?: boolean; lines: string }) => {
    if (!/^\d+$/.test(o.lines)) throw new UsageError('--lines must be a number');
    const { spawn } = process.getBuiltinModule('node:child_process'); // not import(): scripts/build.sh, built-ins
    const args = ['-u', 'tether-node', '--no-pager', '-o', 'cat', '-n', o.lines, ...(o.follow ? ['-f'] : [])];
    const code = await new Promise<number>((resolve) => {
      const p = spawn('journalctl', args, { stdio: 'inherit' });
      p.on('error', (err: NodeJS.ErrnoException) => {
        process.stderr.write(`tether-node: cannot run journalctl (${err.code ?? err.message}); without systemd the daemon logs to its own stdout\n`);
        resolve(1);
      });
      p.on('exit', (c) => resolve(c ?? 1));
    });
    process.exitCode = code;
  });

program
  .command('certificate')
  .description('client certificate')
  .command('renew')
  .description('renew the client certificate now (same key, new certificate)')
  .option(...configOption)
  .action(async (o: { config?: string }) => {
    const c = load(o.config);
    const [{ AgentClient }, { readCredentials, renewCertificate }] = await Promise.all([import('../../common/agent/agent-client.ts'), import('../daemon/certificate.ts')]);
    const client = new AgentClient(controlPlaneUrls(c), readCredentials(c));
    try {
      const r = await renewCertificate(c, client);
      out(`certificate renewed; valid until ${r.expiresAt}`);
    } finally {
      client.close();
    }
  });

program
  .command('version')
  .description('print the version')
  .action(() => out(VERSION));

export async function runCli(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
    } else if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`tether-node: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof HttpError) {
      process.stderr.write(`tether-node: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`tether-node: ${errorMessage(err)}\n`);
      process.exitCode = 1;
    }
  }
}
