/**
 * When a throughput run's commands were done, as the control plane recorded it. With result?next=N
 * (the agents' default: one request per command) an agent's last result is answered only once its
 * next poll's hold ends (up to the poll's wait, 25 s), so the agents' answers no longer say when the
 * work was done: the control plane's own `finishedAt` does, the same measure with and without next
 * (BENCH_AGENT_RESULT_NEXT=0).
 */
import type { HttpClient } from '../../common/http-client.ts';
import { sleep } from './util.ts';

/**
 * Waits until the agents sent a result for every one of `m` commands (their counters, no request to
 * the control plane while it works), then until the control plane counts them succeeded.
 * `poll()` reads the load generators (claims and results drained each call, as Fleet.stats(false)).
 */
export async function waitApplied(o: {
  m: number;
  poll: () => Promise<{ resultRequests: number; resultDone: { id: number; at: number }[] }>;
  succeeded: () => Promise<number>;
  deadlineMs: number;
}): Promise<{ answered: number; lastAnswered: number; requests: number }> {
  let answered = 0;
  let lastAnswered = 0;
  let requests = 0;
  const deadline = Date.now() + o.deadlineMs;
  while (Date.now() < deadline) {
    await sleep(250);
    const st = await o.poll();
    requests = st.resultRequests;
    answered += st.resultDone.length;
    for (const r of st.resultDone) lastAnswered = Math.max(lastAnswered, r.at);
    if (answered >= o.m) break;
    if (requests >= o.m && (await o.succeeded()) >= o.m) break;
  }
  return { answered, lastAnswered, requests };
}

/** How many of the commands with ids minId..maxId succeeded, and the last one's finishedAt (ms). */
export async function lastFinished(admin: HttpClient, minId: number, maxId: number): Promise<{ applied: number; lastFinishedAt: number }> {
  let applied = 0;
  let lastFinishedAt = 0;
  for (let cursor = maxId + 1; cursor > minId; ) {
    const page = (await admin.request<{ commands: { id: number; state: string; finishedAt: string | null }[] }>('GET', `/v1/commands?limit=200&before=${cursor}`)).body.commands;
    if (page.length === 0) break;
    for (const c of page) {
      if (c.id < minId || c.id > maxId || c.state !== 'succeeded' || !c.finishedAt) continue;
      applied++;
      lastFinishedAt = Math.max(lastFinishedAt, Date.parse(c.finishedAt));
    }
    cursor = page[page.length - 1]!.id;
  }
  return { applied, lastFinishedAt };
}
