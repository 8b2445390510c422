/**
 * The one registry of the command types the cluster agent runs: for each, the schema its spec is
 * parsed with again (the agent never trusts the wire) and the executor that runs it. The
 * dispatcher (`executor.ts`) and the flow executor (its steps) both look types up here, so a new
 * step type is added in one place.
 */
import { CommandFailure } from '../../common/errors.ts';
import { diffSpecSchema, flowSpecSchema, helmSpecSchema, manifestSpecSchema, tofuSpecSchema, type ClusterCommandType, type DiffSpec, type FlowStep } from '../../common/specs.ts';
import { executeFlow } from '../flow/flow.executor.ts';
import { executeHelmDiff } from '../helm/diff.executor.ts';
import { executeHelm } from '../helm/helm.executor.ts';
import { executeDiff } from '../manifest/diff.executor.ts';
import { executeManifest } from '../manifest/manifest.executor.ts';
import type { StepContext, StepResult } from '../steps/step.ts';
import { executeTofuDiff } from '../tofu/diff.executor.ts';
import { executeTofu } from '../tofu/tofu.executor.ts';

type StepType = FlowStep['type'];
type SpecOf<T extends StepType> = Extract<FlowStep, { type: T }>['spec'];
type StepExecutors = { [T in StepType]: (spec: SpecOf<T>, s: StepContext) => Promise<StepResult> };

/** The types a flow step may have, and what runs them (their specs are already parsed by the flow's schema). */
export const STEP_EXECUTORS: StepExecutors = {
  helm: executeHelm,
  manifest: executeManifest,
  tofu: executeTofu,
  diff: executeDiffTarget,
};

/** A diff of one target, by its kind. */
function executeDiffTarget(spec: DiffSpec, s: StepContext): Promise<StepResult> {
  return spec.target === 'tofu' ? executeTofuDiff(spec.spec, s) : spec.target === 'helm' ? executeHelmDiff(spec.spec, s) : executeDiff(spec, s);
}

/** Runs one flow step with the executor of its type. */
export function runStep(step: FlowStep, s: StepContext): Promise<StepResult> {
  return (STEP_EXECUTORS[step.type] as (spec: FlowStep['spec'], s: StepContext) => Promise<StepResult>)(step.spec, s);
}

interface SafeParser<T> {
  safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };
}

interface CommandEntry {
  /** Parses the spec (throwing `invalid_spec`) and runs it. */
  run(raw: unknown, s: StepContext): Promise<StepResult>;
}

function entry<T>(type: ClusterCommandType, schema: SafeParser<T>, execute: (spec: T, s: StepContext) => Promise<StepResult>): CommandEntry {
  return { run: (raw, s) => execute(parseSpec(schema, raw, type), s) };
}

export const COMMANDS: { [T in ClusterCommandType]: CommandEntry } = {
  helm: entry('helm', helmSpecSchema, STEP_EXECUTORS.helm),
  manifest: entry('manifest', manifestSpecSchema, STEP_EXECUTORS.manifest),
  tofu: entry('tofu', tofuSpecSchema, STEP_EXECUTORS.tofu),
  flow: entry('flow', flowSpecSchema, (spec, s) => executeFlow(spec, s, runStep)),
  diff: entry('diff', diffSpecSchema, STEP_EXECUTORS.diff),
};

export function commandEntry(type: string): CommandEntry | undefined {
  return Object.hasOwn(COMMANDS, type) ? COMMANDS[type as ClusterCommandType] : undefined;
}

function parseSpec<T>(schema: SafeParser<T>, raw: unknown, type: string): T {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
  throw new CommandFailure('invalid_spec', `invalid ${type} spec: ${issues}`);
}
