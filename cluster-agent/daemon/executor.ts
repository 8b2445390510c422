/**
 * The cluster agent's Executor: validates the claimed spec again (the agent never trusts the
 * wire), gives it a private scratch folder, runs it, and turns errors into outcomes.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Executor, Outcome } from '../../common/agent/runtime.ts';
import { TetherError, errorMessage } from '../../common/errors.ts';
import { CLUSTER_COMMAND_TYPES, flowSpecSchema, helmSpecSchema, manifestSpecSchema, tofuSpecSchema } from '../../common/specs.ts';
import { executeFlow, FlowFailure } from '../flow/flow.executor.ts';
import { executeHelm } from '../helm/helm.executor.ts';
import { executeManifest } from '../manifest/manifest.executor.ts';
import { reapLeftoverProcesses } from '../process/run.ts';
import { SecretResolver } from '../kube/secrets.ts';
import { noOutputRefs, type AgentDeps, type StepContext, type StepResult } from '../steps/step.ts';
import { executeTofu } from '../tofu/tofu.executor.ts';

export function createExecutor(deps: AgentDeps): Executor {
  const runsDir = join(deps.config.workDir, 'runs');
  // Scratch left by a previous process (killed mid-run) may hold resolved secrets.
  rmSync(runsDir, { recursive: true, force: true });
  mkdirSync(runsDir, { recursive: true, mode: 0o700 });
  // So may processes of that process's helm/tofu runs (their grandchildren survive the agent).
  reapLeftoverProcesses(join(deps.config.workDir, 'processes'), deps.log);

  return async (command, ctx): Promise<Outcome> => {
    if (!(CLUSTER_COMMAND_TYPES as readonly string[]).includes(command.type)) {
      return { status: 'failed', error: { code: 'unsupported_type', message: `the cluster agent does not run ${command.type} commands` }, retryable: false };
    }
    const runDir = mkdtempSync(join(runsDir, `${command.id}-`));
    const s: StepContext = { deps, exec: ctx, runDir, secrets: new SecretResolver(deps.kube.core, ctx.mask), output: noOutputRefs };
    try {
      const result = await run(command.type, command.spec, s);
      return { status: 'succeeded', outputs: result.outputs };
    } catch (err) {
      if (ctx.signal.aborted) return { status: 'cancelled', message: errorMessage(ctx.signal.reason) };
      ctx.log.warn({ err }, 'command failed');
      return {
        status: 'failed',
        error: { code: err instanceof TetherError ? err.code : 'executor_error', message: errorMessage(err) },
        retryable: err instanceof TetherError ? err.retryable : false,
        ...(err instanceof FlowFailure ? { outputs: err.outputs } : {}),
      };
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  };
}

async function run(type: string, raw: unknown, s: StepContext): Promise<StepResult> {
  switch (type) {
    case 'helm':
      return executeHelm(parse(helmSpecSchema, raw, type), s);
    case 'manifest':
      return executeManifest(parse(manifestSpecSchema, raw, type), s);
    case 'tofu':
      return executeTofu(parse(tofuSpecSchema, raw, type), s);
    case 'flow':
      return executeFlow(parse(flowSpecSchema, raw, type), s);
    default:
      throw new TetherError('unsupported_type', `the cluster agent does not run ${type} commands`);
  }
}

function parse<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } } }, raw: unknown, type: string): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
  throw new TetherError('invalid_spec', `invalid ${type} spec: ${issues}`);
}
