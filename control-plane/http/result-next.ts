/**
 * `POST /v1/agent/commands/{id}/result?next=N`: an agent's result and its next poll in one request
 * (issue 18: one request per command instead of two, a result then `GET /v1/agent/poll?wait=N`).
 *
 * The result is stored exactly as without `next` (queue.report: fenced, refusals unchanged);
 * then the same claim path as the poll (queue.poll: held up to N s when nothing is queued, a claim
 * whose agent left meanwhile given back). The answer is `{status, state, next: {command, cancel}}`,
 * `next` being what the poll would have answered. It is sent only once the result's write is on
 * disk (the durability barrier; a claim's barrier in queue.poll covers both, as it started after
 * the result's commit).
 *
 * Once the result is stored it is never answered as an error: a drain (503 draining on a poll), a
 * revocation (403) or a storage failure while claiming or held answers 200 with the result's
 * status and state and an empty `next`. The agent then polls on its own, and that poll gets the
 * drain's Retry-After, the revocation's refusal or the storage error as any poll does.
 */
import type { PollResponse, ResultRequest, ResultNextResponse } from '../../common/wire.ts';
import type { Logger } from '../../common/logger.ts';
import type { Durability } from '../db/durability.ts';
import { RetryLater, type AgentPrincipal, type QueueService } from '../queue/queue.service.ts';
import type { HoldSignal } from '../queue/dispatcher.ts';
import { describeError } from './errors.ts';
import { secondsQuery } from './seconds-query.ts';

/** A result's `next` (seconds, the poll's `wait`'s bounds), or undefined when the query has none (a result alone, as before). */
const nextQuery = secondsQuery('next');
export const resultNextQuery = nextQuery.schema;
export const resultNextSeconds = nextQuery.read;

/** What the poll part answers when it cannot claim (drain, revocation, storage): nothing. */
function emptyNext(): PollResponse {
  return { command: null, cancel: [] };
}

export interface ResultNextDeps {
  queue: QueueService;
  durability: Durability;
  log: Logger;
  /** The agent API's longest hold (config.longPollSeconds): `next` is capped to it as `wait` is. */
  longPollSeconds: number;
}

/**
 * Stores the result, then claims (or waits for) the next command. Refusals of the result itself
 * (stale lease, unknown job, outputs too large, storage) are thrown as without `next`.
 */
export async function reportAndPoll(
  d: ResultNextDeps,
  agent: AgentPrincipal,
  id: number,
  result: ResultRequest,
  nextSeconds: number,
  signal: HoldSignal,
): Promise<ResultNextResponse> {
  const reported = await d.queue.report(agent, id, result);
  const waitMs = Math.min(nextSeconds, d.longPollSeconds) * 1000;
  let next: PollResponse;
  try {
    // A claim waits for the barrier in queue.poll (which then covers the result too).
    next = await d.queue.poll(agent, waitMs, signal);
    if (next.command === null) {
      const durable = d.durability.barrier();
      if (durable) await durable;
    }
  } catch (err) {
    // The result is stored: only the poll part failed. Its write must still be on disk before
    // the answer (a barrier that fails now is the result's failure too: thrown, 503).
    const why = describeError(err);
    if (err instanceof RetryLater || why.status === 403) d.log.debug({ agentId: agent.agentId, commandId: id, code: why.code }, 'result stored; next command not claimed');
    else d.log.warn({ err, agentId: agent.agentId, commandId: id, code: why.code }, 'result stored; claiming the next command failed');
    const durable = d.durability.barrier();
    if (durable) await durable;
    next = emptyNext();
  }
  return { status: reported.status, state: reported.state, next };
}
