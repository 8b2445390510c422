/**
 * `tether follow ID`: streams a job's log until it ends. Says what a queued job waits for (no agent
 * of its cluster or node connected, and how to start one), and rides out a restart of the control
 * plane: the stream is reopened after the last line received (`after=`), so nothing is printed
 * twice and nothing is lost.
 */
import { HttpError, type HttpClient } from '../../common/http-client.ts';
import { TetherError, errorMessage } from '../../common/errors.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { readSse } from './sse.ts';

/** How long the control plane may stay away before follow gives up. */
const OUTAGE_LIMIT_MS = 5 * 60_000;

export interface FollowIo {
  stdout(s: string): void;
  stderr(s: string): void;
}

interface Final {
  state: string;
  error?: { code: string; message: string } | null;
}

/** Follows job `id` to its end; returns the exit code (0 succeeded, 1 anything else). */
export async function followJob(c: HttpClient, id: number, io: FollowIo): Promise<number> {
  let lastId = 0;
  let outageSince: number | undefined;
  let delayMs = 250;
  let explained = false;
  for (;;) {
    let final: Final | undefined;
    try {
      const res = await c.stream(`/v1/commands/${id}/logs?follow=1${lastId > 0 ? `&after=${lastId}` : ''}`);
      if (outageSince !== undefined) io.stderr(`tether: reconnected; resuming job ${id}'s log after line ${lastId}\n`);
      outageSince = undefined;
      delayMs = 250;
      if (!explained) {
        explained = true;
        void explainWait(c, id).then((m) => m && io.stderr(`tether: ${m}\n`), () => undefined);
      }
      try {
        for await (const ev of readSse(res)) {
          if (ev.event === 'log') {
            const l = JSON.parse(ev.data) as { id: number; text: string; stream: string };
            lastId = Math.max(lastId, Number(ev.id ?? l.id) || 0);
            (l.stream === 'stderr' ? io.stderr : io.stdout)(`${l.text}\n`);
          } else if (ev.event === 'state') {
            const s = JSON.parse(ev.data) as { state: string };
            if (s.state === 'running') io.stderr(`tether: job ${id} running\n`);
          } else if (ev.event === 'end') {
            final = JSON.parse(ev.data) as Final;
            break;
          }
        }
      } finally {
        res.destroy();
      }
      if (!final) throw new TetherError('stream_ended', 'the log stream ended before the job finished', { status: 503, retryable: true });
    } catch (err) {
      // 4xx: the request itself is refused (no such job, bad token): retrying cannot help.
      if (err instanceof HttpError && !err.retryable) throw err;
      const now = Date.now();
      if (outageSince === undefined) {
        outageSince = now;
        const why = errorMessage(err) === 'aborted' ? 'the control plane closed the connection' : errorMessage(err);
        io.stderr(`tether: lost the log stream of job ${id} (${why}); reconnecting\n`);
      } else if (now - outageSince > OUTAGE_LIMIT_MS) {
        throw new TetherError('control_plane_gone', `the control plane has not answered for ${Math.round(OUTAGE_LIMIT_MS / 60_000)} minutes; \`tether follow ${id}\` resumes where this stopped`);
      }
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(delayMs * 2, 2000);
      continue;
    }
    io.stderr(`tether: job ${id} ${final.state}${final.error ? `: ${final.error.code}: ${final.error.message}` : ''}\n`);
    return final.state === 'succeeded' ? 0 : 1;
  }
}

/**
 * For a queued job: which agent it waits for, and whether one is connected (the agents list
 * computes each agent's status from its heartbeats). Undefined when the job is not queued.
 */
export async function explainWait(c: HttpClient, id: number): Promise<string | undefined> {
  const job = (await c.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  if (job.state !== 'queued') return undefined;
  const { cluster, node } = job.target;
  const { agents } = (await c.request<{ agents: AgentView[] }>('GET', `/v1/agents?cluster=${encodeURIComponent(cluster)}`)).body;
  const live = agents.filter((a) => !a.revoked && a.status !== 'offline' && (node ? a.role === 'node' && a.nid === node : a.role === 'cluster-agent'));
  if (live.length > 0) return `job ${id} queued; waiting for agent ${live.map((a) => a.id).join(', ')} to claim it`;
  return node
    ? `job ${id} queued: no node agent of node ${node} in cluster ${cluster} is connected; start one with \`tether tokens create --cluster ${cluster} --role node\`, then \`tether-node register\` and \`tether-node agent\` on that host (docs/node-agent.md)`
    : `job ${id} queued: no cluster agent of cluster ${cluster} is connected; start one with \`tether tokens create --cluster ${cluster} --role cluster-agent\` and the cluster agent's chart (docs/cluster-agent.md)`;
}
