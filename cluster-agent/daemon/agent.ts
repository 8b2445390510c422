/**
 * The cluster agent's composition root: cluster access, identity (bootstrap or reuse, renewal),
 * the executor and the shared consumer loop. `main.ts` parses the configuration and signals.
 */
import { mkdirSync, readFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { hostMetricsCollector } from '../../common/agent/host-metrics.ts';
import type { Masker } from '../../common/agent/masker.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { AgentRuntime } from '../../common/agent/runtime.ts';
import { TetherError, errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { ClusterAgentConfig } from '../config/cluster.config.ts';
import { createExecutor } from './executor.ts';
import { CertificateRenewer, IdentitySecretStore, loadOrBootstrap } from '../identity/identity.ts';
import { connectKube } from '../kube/kube.ts';

export const AGENT_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface RunningAgent {
  runtime: AgentRuntime;
  agentId: string;
  stop(): Promise<void>;
}

export async function startClusterAgent(config: ClusterAgentConfig, log: Logger, signal?: AbortSignal, masker?: Masker): Promise<RunningAgent> {
  mkdirSync(config.workDir, { recursive: true, mode: 0o700 });
  chmodSync(config.workDir, 0o700);
  let caPem: string;
  try {
    caPem = readFileSync(config.caFile, 'utf8');
  } catch (err) {
    throw new TetherError('config_error', `cannot read the CA file ${config.caFile}: ${errorMessage(err)}`);
  }
  const kube = connectKube({ kubeconfig: config.kubeconfig, workDir: config.workDir });
  log.info({ inCluster: kube.inCluster, namespace: config.agentNamespace, url: config.url }, 'starting the cluster agent');

  const store = new IdentitySecretStore(kube, config.agentNamespace, config.identitySecret, config.identityOwnerConfigMap);
  const identity = await loadOrBootstrap({ store, url: config.url, caPem, bootstrapToken: config.bootstrapToken, log, signal });
  const client = new AgentClient(config.url, { certPem: identity.certPem, keyPem: identity.keyPem, caPem }, { onMove: (m) => log.warn(m, 'moved to another control-plane replica') });
  const renewer = new CertificateRenewer({ identity, client, store, log, intervalMs: config.renewCheckSeconds * 1000 });
  renewer.start();

  const runtime = new AgentRuntime({
    client,
    execute: createExecutor({ config, kube, log }),
    log: log.child({ agentId: identity.agentId }),
    version: AGENT_VERSION,
    collectMetrics: hostMetricsCollector(config.workDir),
    concurrency: config.concurrency,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    pollWaitSeconds: config.pollWaitSeconds,
    shutdownGraceMs: config.shutdownGraceSeconds * 1000,
    outbox: new FileOutbox(join(config.workDir, 'outbox')),
    ...(masker ? { masker } : {}),
  });
  runtime.start();
  log.info({ agentId: identity.agentId, cid: identity.cid, concurrency: config.concurrency }, 'cluster agent running');
  return {
    runtime,
    agentId: identity.agentId,
    async stop() {
      renewer.stop();
      await runtime.stop();
      client.close();
    },
  };
}
