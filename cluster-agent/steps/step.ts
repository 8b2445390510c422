/**
 * What every step executor (helm, manifest, tofu; flows run them in order) gets and returns.
 */
import type { ExecutionContext } from '../../common/agent/runtime.ts';
import type { Logger } from '../../common/logger.ts';
import type { OutputRef } from '../../common/specs.ts';
import { CommandFailure, TetherError } from '../../common/errors.ts';
import type { ClusterAgentConfig } from '../config/cluster.config.ts';
import type { KubeAccess } from '../kube/kube.ts';
import type { SecretResolver } from '../kube/secrets.ts';
import type { RefResolvers } from './values.ts';

export interface AgentDeps {
  config: ClusterAgentConfig;
  kube: KubeAccess;
  log: Logger;
}

export interface StepContext {
  deps: AgentDeps;
  exec: ExecutionContext;
  /** Scratch folder of this step (0700), removed by the caller afterwards. */
  runDir: string;
  secrets: SecretResolver;
  /** Resolves an {outputRef}; outside flows every reference is an error. */
  output(ref: OutputRef): Promise<unknown>;
}

export interface StepResult {
  /** What the control plane may see: never a secret value. */
  outputs: Record<string, unknown>;
  /** A value for an {outputRef} of a later step (may read sensitive values from the cluster). */
  lookup(key: string): Promise<unknown>;
}

export function refResolvers(s: StepContext, namespace: string): RefResolvers {
  return { secret: (ref) => s.secrets.resolve(ref, namespace), output: (ref) => s.output(ref) };
}

export const noOutputRefs = async (ref: OutputRef): Promise<never> => {
  throw new CommandFailure('invalid_spec', `outputRef to step "${ref.step}" is only meaningful inside a flow`);
};

export function plainLookup(outputs: Record<string, unknown>): (key: string) => Promise<unknown> {
  return async (key) => (Object.hasOwn(outputs, key) ? outputs[key] : undefined);
}

/** Throws the abort reason when the execution was stopped (cancel, timeout, shutdown). */
export function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new TetherError('cancelled', 'stopped');
}
