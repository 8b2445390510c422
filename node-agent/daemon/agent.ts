/**
 * The node agent daemon: the shared AgentRuntime (long-poll over mTLS, heartbeats with host
 * metrics and VPN peer state, jittered backoff, results through an on-disk outbox under the state
 * dir), a VPN sync at start and on an interval as a safety net, and certificate renewal.
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { AgentRuntime } from '../../common/agent/runtime.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { hostMetricsCollector } from '../../common/agent/host-metrics.ts';
import type { Logger } from '../../common/logger.ts';
import { controlPlaneUrls, type NodeConfig } from '../config/node.config.ts';
import { reapLeftoverProcesses, runCommand, type Runner } from '../process/run.ts';
import type { VpnSyncResult } from '../vpn/vpn.sync.ts';
import { collectVpnState } from '../vpn/vpn.state.ts';
import { VERSION } from '../version.ts';
import { certificateDue, readCredentials, renewCertificate } from './certificate.ts';
import { nodeExecutor } from './executor.ts';
import { recordServer } from './server-record.ts';

export interface RunningNodeAgent {
  runtime: AgentRuntime;
  client: AgentClient;
  /** The VPN sync, serialised (commands and the timer never run two at once). */
  syncVpn(): Promise<VpnSyncResult>;
  stop(): Promise<void>;
}

export interface NodeAgentOptions {
  run?: Runner;
  /** Skip the VPN sync at start (status checks, tests without WireGuard). */
  vpnAtStart?: boolean;
  renewCheckMs?: number;
}

export function startNodeAgent(config: NodeConfig, log: Logger, o: NodeAgentOptions = {}): RunningNodeAgent {
  const run = o.run ?? runCommand;
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  // Kills what a previous daemon process's commands left behind (kill -9, OOM), then records runs.
  reapLeftoverProcesses(join(config.stateDir, 'processes'), log, 'host commands');
  const creds = readCredentials(config);
  const client = new AgentClient(controlPlaneUrls(config), creds, {
    onMove: (m) => {
      log.warn(m, 'moved to another control-plane replica');
      recordServer(config.stateDir, m.to, log);
    },
  });
  recordServer(config.stateDir, client.current, log);

  let chain: Promise<unknown> = Promise.resolve();
  const serialisedSync = (): Promise<VpnSyncResult> => {
    const next = chain.then(async () => {
      if (!config.network.manageVpn) throw new Error('this node does not manage its VPN (network.manageVpn is false)');
      // Loaded by the first sync (the one at start, when the node manages its VPN): a node that does not never loads it.
      const { syncVpn } = await import('../vpn/vpn.sync.ts');
      return syncVpn(config, client, run, log);
    });
    chain = next.catch(() => undefined);
    return next;
  };

  const runtime = new AgentRuntime({
    client,
    execute: nodeExecutor({ config, run, caPem: creds.caPem, syncVpn: serialisedSync }),
    log,
    version: VERSION,
    collectMetrics: hostMetricsCollector('/'),
    ...(config.network.manageVpn ? { collectVpn: () => collectVpnState(config.network, run, { forHeartbeat: true, keyDir: join(config.stateDir, 'wireguard') }).catch(() => undefined) } : {}),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    pollWaitSeconds: config.pollWaitSeconds,
    shutdownGraceMs: config.shutdownGraceSeconds * 1000,
    outbox: new FileOutbox(join(config.stateDir, 'outbox')),
  });
  runtime.start();
  log.info({ agentId: config.agentId, nid: config.nodeId, cid: config.cluster, servers: controlPlaneUrls(config), version: VERSION }, 'node agent started');

  const timers: NodeJS.Timeout[] = [];
  let stopped = false;
  // VPN at start: retried with backoff until it works once (the control plane may be away).
  if (o.vpnAtStart !== false && config.network.manageVpn) {
    void (async () => {
      for (let delay = 1000; !stopped; delay = Math.min(delay * 2, 60_000)) {
        try {
          await serialisedSync();
          return;
        } catch (err) {
          log.warn({ err, retryInMs: delay }, 'VPN sync at start failed');
          await new Promise((r) => timers.push(setTimeout(r, delay * (0.5 + Math.random()))));
        }
      }
    })();
    if (config.network.resyncSeconds > 0) {
      timers.push(setInterval(() => void serialisedSync().catch((err) => log.warn({ err }, 'periodic VPN sync failed')), config.network.resyncSeconds * 1000));
    }
  }
  const renewCheck = async () => {
    try {
      const { due, notAfter } = certificateDue(config);
      if (!due) return;
      log.info({ notAfter }, 'certificate in the last third of its life: renewing');
      const r = await renewCertificate(config, client);
      log.info({ expiresAt: r.expiresAt }, 'certificate renewed');
    } catch (err) {
      log.warn({ err }, 'certificate renewal failed; will retry');
    }
  };
  void renewCheck();
  timers.push(setInterval(() => void renewCheck(), o.renewCheckMs ?? 3_600_000));

  return {
    runtime,
    client,
    syncVpn: serialisedSync,
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      await runtime.stop();
      await chain;
      client.close();
    },
  };
}
