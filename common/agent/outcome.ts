/**
 * What an execution ends with and how it goes on the wire: the executor's outcome (a closed union),
 * why its signal was aborted, and the result the runtime reports (masked by the agent's one masker).
 */
import type { Logger } from '../logger.ts';
import { COMMAND_ERRORS, type CommandErrorCode } from '../errors.ts';
import type { ClaimedCommand, LogLine, ResultRequest } from '../wire.ts';
import type { Masker } from './masker.ts';

export type Outcome =
  | { status: 'succeeded'; outputs?: Record<string, unknown> }
  | { status: 'failed'; error: { code: CommandErrorCode; message: string }; outputs?: Record<string, unknown> }
  | { status: 'cancelled'; message?: string }
  | { status: 'timed_out'; message?: string };

/** Why an execution's signal was aborted. */
export class StopReason extends Error {
  readonly kind: 'cancelled' | 'timed_out' | 'shutdown';
  constructor(kind: 'cancelled' | 'timed_out' | 'shutdown', message: string) {
    super(message);
    this.kind = kind;
  }
}

export interface ExecutionContext {
  commandId: number;
  attempt: number;
  /** Aborted on cancellation, timeout or shutdown; `signal.reason` is a {@link StopReason}. */
  signal: AbortSignal;
  /** Local structured log (stays on the agent). */
  log: Logger;
  /** A line for the command's log on the control plane; registered secret values are masked. */
  emit(text: string, stream?: LogLine['stream']): void;
  /**
   * Registers a secret value (for as long as this execution runs) with the agent's one masker: it
   * never appears in an emitted line, the outputs or error of the result, or the agent's own log.
   */
  mask(value: string): void;
}

export type Executor = (command: ClaimedCommand, ctx: ExecutionContext) => Promise<Outcome>;

export function fromStopReason(reason: unknown, outcome: Outcome): Outcome {
  if (reason instanceof StopReason) {
    if (reason.kind === 'timed_out') return { status: 'timed_out', message: reason.message };
    return { status: 'cancelled', message: reason.message };
  }
  return outcome;
}

/** The result as sent: every string of the outputs and the error message masked (the one masker). */
export function toResult(leaseId: string, o: Outcome, masker: Masker): ResultRequest {
  switch (o.status) {
    case 'succeeded':
      return { leaseId, outcome: 'succeeded', ...(o.outputs ? { outputs: masker.applyDeep(o.outputs) } : {}) };
    case 'failed':
      return {
        leaseId,
        outcome: 'failed',
        error: { code: o.error.code, message: masker.apply(o.error.message).slice(0, 16_000), retryable: COMMAND_ERRORS[o.error.code].retryable },
        ...(o.outputs ? { outputs: masker.applyDeep(o.outputs) } : {}),
      };
    case 'cancelled':
      return { leaseId, outcome: 'cancelled', error: { code: 'cancelled', message: masker.apply(o.message ?? 'cancelled'), retryable: false } };
    case 'timed_out':
      return { leaseId, outcome: 'timed_out', error: { code: 'timed_out', message: masker.apply(o.message ?? 'timed out'), retryable: false } };
  }
}
