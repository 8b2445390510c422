/**
 * The cluster agent's configuration: flags (commander) over environment variables, parsed once
 * with zod. Nothing else in the agent reads process.env or argv.
 */
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { dnsLabel, dnsSubdomain } from '../../common/specs.ts';
import { parseControlPlaneUrls } from '../../common/agent/failover.plan.ts';
import { LONG_POLL_SECONDS } from '../../common/agent-wire.ts';

const intFromString = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const configSchema = z
  .object({
    /**
     * The control plane: one https://host[:port], or several replicas' comma-separated (the agent
     * moves to the next when its replica fails; one name with several addresses is walked the same way).
     */
    url: z.string().min(1).max(4096).superRefine((u, ctx) => {
      try {
        parseControlPlaneUrls(u);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
    caFile: z.string().min(1),
    /** Only needed on the first start, while no identity Secret exists. */
    bootstrapToken: z.string().min(1).max(200).optional(),
    agentNamespace: dnsLabel(),
    identitySecret: dnsSubdomain.default('tether-agent-identity'),
    /**
     * A ConfigMap of the agent's namespace that owns the identity Secret (the chart's CA ConfigMap):
     * deleting it (`helm uninstall`) has Kubernetes' garbage collector delete the identity too.
     */
    identityOwnerConfigMap: dnsSubdomain.optional(),
    /** Path of a kubeconfig; unset means in-cluster configuration. */
    kubeconfig: z.string().min(1).optional(),
    helmBin: z.string().min(1).default('helm'),
    tofuBin: z.string().min(1).default('tofu'),
    /** Handed to tofu as TF_CLI_CONFIG_FILE (provider mirrors, no network). */
    tofuCliConfigFile: z.string().min(1).optional(),
    /** Handed to tofu as TF_PLUGIN_CACHE_DIR. */
    tofuPluginCacheDir: z.string().min(1).optional(),
    concurrency: intFromString(1, 64).default(2),
    workDir: z.string().min(1).default(join(tmpdir(), 'tether-cluster-agent')),
    heartbeatIntervalMs: intFromString(100, 300_000).default(5000),
    pollWaitSeconds: intFromString(1, 120).default(LONG_POLL_SECONDS),
    shutdownGraceSeconds: intFromString(0, 3600).default(30),
    /** Time a helm/tofu process group gets between SIGTERM and SIGKILL when cancelled. */
    killGraceSeconds: intFromString(0, 600).default(10),
    /** How often the certificate's remaining lifetime is checked. */
    renewCheckSeconds: intFromString(1, 86_400).default(3600),
  })
  .strict();

export type ClusterAgentConfig = z.infer<typeof configSchema>;

export function parseConfig(input: z.input<typeof configSchema>): ClusterAgentConfig {
  const c = configSchema.parse(input);
  return { ...c, workDir: resolve(c.workDir), caFile: resolve(c.caFile), ...(c.kubeconfig ? { kubeconfig: resolve(c.kubeconfig) } : {}) };
}

/** [flag, env var, config key, description] */
const OPTIONS: [string, string, keyof ClusterAgentConfig, string][] = [
  ['--url <url>', 'TETHER_URL', 'url', 'control plane URL (https://); several replicas comma-separated'],
  ['--ca-file <file>', 'TETHER_CA_FILE', 'caFile', 'CA certificate of the control plane'],
  ['--bootstrap-token <token>', 'TETHER_BOOTSTRAP_TOKEN', 'bootstrapToken', 'one-time bootstrap token (first start only; prefer the env var)'],
  ['--agent-namespace <ns>', 'TETHER_AGENT_NAMESPACE', 'agentNamespace', 'namespace of the agent (its identity Secret lives here)'],
  ['--identity-secret <name>', 'TETHER_IDENTITY_SECRET', 'identitySecret', 'name of the identity Secret'],
  ['--identity-owner-configmap <name>', 'TETHER_IDENTITY_OWNER_CONFIGMAP', 'identityOwnerConfigMap', 'ConfigMap (same namespace) that owns the identity Secret: deleting it deletes the identity'],
  ['--kubeconfig <file>', 'KUBECONFIG', 'kubeconfig', 'kubeconfig to use (default: in-cluster configuration)'],
  ['--helm-bin <path>', 'TETHER_HELM_BIN', 'helmBin', 'helm binary'],
  ['--tofu-bin <path>', 'TETHER_TOFU_BIN', 'tofuBin', 'tofu binary'],
  ['--tofu-cli-config-file <file>', 'TF_CLI_CONFIG_FILE', 'tofuCliConfigFile', 'tofu CLI configuration (provider mirrors)'],
  ['--tofu-plugin-cache-dir <dir>', 'TF_PLUGIN_CACHE_DIR', 'tofuPluginCacheDir', 'tofu provider plugin cache'],
  ['--concurrency <n>', 'TETHER_CONCURRENCY', 'concurrency', 'commands executed at the same time'],
  ['--work-dir <dir>', 'TETHER_WORK_DIR', 'workDir', 'scratch folder (checkouts, outbox, helm caches)'],
  ['--heartbeat-interval-ms <ms>', 'TETHER_HEARTBEAT_INTERVAL_MS', 'heartbeatIntervalMs', 'heartbeat interval'],
  ['--poll-wait-seconds <s>', 'TETHER_POLL_WAIT_SECONDS', 'pollWaitSeconds', 'long-poll duration'],
  ['--shutdown-grace-seconds <s>', 'TETHER_SHUTDOWN_GRACE_SECONDS', 'shutdownGraceSeconds', 'time running work may finish after SIGTERM'],
  ['--kill-grace-seconds <s>', 'TETHER_KILL_GRACE_SECONDS', 'killGraceSeconds', 'SIGTERM to SIGKILL delay for cancelled helm/tofu runs'],
  ['--renew-check-seconds <s>', 'TETHER_RENEW_CHECK_SECONDS', 'renewCheckSeconds', 'how often certificate expiry is checked'],
];

/** Flags win over environment variables; unset values take the schema's defaults. */
export function configFromArgv(argv: string[], env: NodeJS.ProcessEnv): ClusterAgentConfig {
  const program = new Command('tether-cluster-agent')
    .description('Tether cluster agent: pulls helm, manifest, tofu and flow commands and runs them in this cluster')
    .allowExcessArguments(false)
    .exitOverride();
  for (const [flag, envVar, , description] of OPTIONS) program.addOption(new Option(flag, `${description} (env ${envVar})`));
  program.parse(argv);
  const flags = program.opts<Record<string, string | undefined>>();
  const raw: Record<string, string> = {};
  for (const [, envVar, key] of OPTIONS) {
    const v = flags[key] ?? env[envVar];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  return parseConfig(raw as z.input<typeof configSchema>);
}
