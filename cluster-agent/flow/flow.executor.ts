/**
 * Runs a flow: its steps in order, each step's {outputRef}s resolved from the results of the steps
 * before it (sensitive tofu outputs are read back from their Secret, inside the agent). Stops at
 * the first failure; every step's state is reported.
 *
 * A `diff` step changes nothing, so nothing after it depends on it having worked: a flow does not
 * stop at a failed diff step (its error is reported, the next steps run, and the flow fails at the
 * end), and a drifted diff step is not a failure at all (its outputs say what drifted).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CommandFailure, classifyFailure, errorMessage, type CommandErrorCode } from '../../common/errors.ts';
import type { FlowSpec, FlowStep, OutputRef } from '../../common/specs.ts';
import type { StepContext, StepResult } from '../steps/step.ts';

export interface FlowStepReport {
  name: string;
  type: FlowStep['type'];
  state: 'succeeded' | 'failed' | 'skipped' | 'cancelled';
  outputs?: Record<string, unknown>;
  error?: { code: CommandErrorCode; message: string };
}

/**
 * A flow that stopped at a failed step; `outputs.steps` reports every step's state. It carries the
 * failed step's code, so it is retryable exactly when that step's failure is.
 */
export class FlowFailure extends CommandFailure {
  readonly outputs: Record<string, unknown>;
  constructor(code: CommandErrorCode, message: string, steps: FlowStepReport[], cause: unknown) {
    super(code, message, { cause });
    this.outputs = { steps };
  }
}

/** Runs one step with the executor of its type (the registry in daemon/commands.ts). */
export type StepRunner = (step: FlowStep, s: StepContext) => Promise<StepResult>;

export async function executeFlow(spec: FlowSpec, s: StepContext, runStep: StepRunner): Promise<StepResult> {
  const results = new Map<string, StepResult>();
  const reports: FlowStepReport[] = spec.steps.map((st) => ({ name: st.name, type: st.type, state: 'skipped' }));
  const output = async (ref: OutputRef): Promise<unknown> => {
    const r = results.get(ref.step);
    if (!r) throw new CommandFailure('output_not_found', `outputRef to step "${ref.step}", which has not run`);
    const v = await r.lookup(ref.key);
    if (v === undefined) throw new CommandFailure('output_not_found', `step "${ref.step}" has no output "${ref.key}"`);
    return v;
  };

  let failedDiff: { index: number; err: unknown } | undefined;
  for (const [i, step] of spec.steps.entries()) {
    const report = reports[i]!;
    const runDir = join(s.runDir, `${i}-${step.name}`);
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    s.exec.emit(`step ${i + 1}/${spec.steps.length} "${step.name}" (${step.type}) starting`);
    try {
      const r = await runStep(step, { ...s, runDir, output });
      results.set(step.name, r);
      report.state = 'succeeded';
      report.outputs = r.outputs;
      s.exec.emit(`step "${step.name}" succeeded`);
    } catch (err) {
      const aborted = s.exec.signal.aborted;
      report.state = aborted ? 'cancelled' : 'failed';
      report.error = { code: classifyFailure(err).code, message: errorMessage(err) };
      s.exec.emit(`step "${step.name}" ${report.state}: ${report.error.message}`);
      s.exec.emit(`steps: ${reports.map((r) => `${r.name}=${r.state}`).join(', ')}`);
      if (aborted) throw err;
      if (step.type === 'diff') {
        failedDiff ??= { index: i, err };
        continue;
      }
      throw new FlowFailure(
        report.error.code,
        `flow stopped at step ${i + 1}/${spec.steps.length} "${step.name}" (${step.type}): ${report.error.message} ` +
          `[steps: ${reports.map((r) => `${r.name} ${r.state}`).join(', ')}]`,
        reports,
        err,
      );
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  }
  if (failedDiff) {
    const step = spec.steps[failedDiff.index]!;
    const error = reports[failedDiff.index]!.error!;
    throw new FlowFailure(
      error.code,
      `diff step ${failedDiff.index + 1}/${spec.steps.length} "${step.name}" failed: ${error.message} ` +
        `[steps: ${reports.map((r) => `${r.name} ${r.state}`).join(', ')}]`,
      reports,
      failedDiff.err,
    );
  }
  const outputs: Record<string, unknown> = { steps: reports };
  return { outputs, lookup: async () => undefined };
}
