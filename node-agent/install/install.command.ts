/** install = gather facts, plan (pure), then print (dry-run) or execute. Shared by the CLI and the daemon. */
import type { NodeConfig } from '../config/node.config.ts';
import { runCommand, type Runner } from '../process/run.ts';
import { gatherInstallFacts } from './install.facts.ts';
import { planInstall, renderPlan, type JoinParameters, type Step } from './install.plan.ts';
import { executePlan, hostCommandsAllowed, type InstallResult } from './install.run.ts';
import { DEFAULT_KUBERNETES_VERSION } from '../version.ts';

export { DEFAULT_KUBERNETES_VERSION };

export interface InstallCommandOptions {
  config: Pick<NodeConfig, 'nodeId' | 'controlPlane'>;
  root: string;
  dryRun: boolean;
  kubernetesVersion?: string;
  nodeIp?: string;
  join?: JoinParameters;
  run?: Runner;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export async function runInstall(o: InstallCommandOptions): Promise<{ plan: Step[]; text: string; result: InstallResult; hostCommands: boolean }> {
  const run = o.run ?? runCommand;
  const hostCommands = !o.dryRun && hostCommandsAllowed(o.root, o.env);
  const facts = await gatherInstallFacts(o.root, run);
  const plan = planInstall(facts, {
    root: o.root,
    nodeName: o.config.nodeId,
    controlPlaneNode: o.config.controlPlane,
    kubernetesVersion: o.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION,
    ...(o.nodeIp ? { nodeIp: o.nodeIp } : {}),
    ...(o.join ? { join: o.join } : {}),
  });
  const text = renderPlan(plan, { root: o.root, hostCommands });
  o.onLine?.(text);
  if (o.dryRun) {
    return { plan, text, hostCommands, result: { ok: true, pending: plan.filter((s) => s.actions.some((a) => a.needed)).length, steps: plan.map((s) => ({ id: s.id, status: s.actions.some((a) => a.needed) ? 'dry-run' : 'done', notes: [] })) } };
  }
  const result = await executePlan(plan, { root: o.root, hostCommands, run, ...(o.signal ? { signal: o.signal } : {}), ...(o.onLine ? { onLine: o.onLine } : {}) });
  return { plan, text, result, hostCommands };
}
