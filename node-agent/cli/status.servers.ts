/**
 * `tether-node status`, the control planes: each configured URL is asked `whoami` over mTLS on a
 * connection of its own (not the failover client, which would stop at the first that fails), all
 * at once. The node is fine while one answers; the replica the daemon last used is marked.
 */
import { AgentClient } from '../../common/agent/agent-client.ts';
import type { AgentCredentials } from '../../common/agent/agent-client.ts';
import { errorMessage } from '../../common/errors.ts';
import { HttpError } from '../../common/http-client.ts';

export interface ServerCheck {
  url: string;
  reachable: boolean;
  detail: string;
  /** The daemon's current replica (state folder, current-server). */
  lastUsed: boolean;
}

export async function checkServers(urls: readonly string[], creds: AgentCredentials, last: string | undefined): Promise<ServerCheck[]> {
  return Promise.all(
    urls.map(async (url) => {
      const lastUsed = last !== undefined && (last === url || last.startsWith(`${url} (`));
      const client = new AgentClient(url, creds);
      try {
        await client.request('GET', '/v1/agent/whoami');
        return { url, reachable: true, detail: 'mTLS ok', lastUsed };
      } catch (err) {
        return { url, reachable: false, detail: err instanceof HttpError ? `${err.code}: ${err.message}` : errorMessage(err), lastUsed };
      } finally {
        client.close();
      }
    }),
  );
}

/** The status lines of the servers, and the message when none is reachable. */
export function serverLines(checks: readonly ServerCheck[]): { lines: string[]; error?: string } {
  const lines = checks.map((s) => `server      ${s.url}: ${s.reachable ? 'reachable' : 'UNREACHABLE'} (${s.detail})${s.lastUsed ? ' [used by the daemon]' : ''}`);
  if (checks.some((s) => s.reachable)) return { lines };
  return { lines, error: `no control plane is reachable (${checks.length === 1 ? checks[0]!.url : `tried ${checks.map((s) => s.url).join(', ')}`})` };
}
