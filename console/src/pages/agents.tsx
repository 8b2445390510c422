/**
 * Nodes and agents: status polled every 2 s (it changes as heartbeats arrive or stop), the age of
 * the last heartbeat ticking between polls (from the server's secondsSinceHeartbeat, so the
 * browser's clock does not matter), version, host metrics, VPN peers, revoke with a confirmation.
 */
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, errorText, type Agent } from '../api.ts';
import { Confirm, ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { duration, now } from '../time.ts';

const GiB = 1024 ** 3;
const pct = (used?: unknown, total?: unknown) => (typeof used === 'number' && typeof total === 'number' && total > 0 ? `${Math.round((used / total) * 100)}% of ${(total / GiB).toFixed(1)} GiB` : '–');

function Metrics(props: { m: Record<string, unknown> | null }) {
  const m = props.m;
  if (!m) return <span class="muted">–</span>;
  return (
    <ul class="plain small">
      {typeof m.cpuPercent === 'number' ? <li>CPU {m.cpuPercent.toFixed(0)}%</li> : null}
      {m.memoryTotalBytes !== undefined ? <li>memory {pct(m.memoryUsedBytes, m.memoryTotalBytes)}</li> : null}
      {m.diskTotalBytes !== undefined ? <li>disk {pct(m.diskUsedBytes, m.diskTotalBytes)}</li> : null}
      {Array.isArray(m.load) ? <li>load {m.load.map((x) => Number(x).toFixed(2)).join(' ')}</li> : null}
    </ul>
  );
}

interface Peer {
  publicKey?: string;
  endpoint?: string | null;
  latestHandshake?: number | null;
}
function VpnPeers(props: { vpn: Record<string, unknown> | null }) {
  const ifs = Object.entries(props.vpn ?? {}) as [string, { up?: boolean; peers?: Peer[] }][];
  if (!ifs.length) return <span class="muted">–</span>;
  return (
    <ul class="plain small">
      {ifs.map(([name, v]) => (
        <li key={name}>
          {name}: {v.up === false ? 'down' : `${v.peers?.length ?? 0} peer(s)`}
          {v.peers?.length ? (
            <ul class="plain">
              {v.peers.map((p, i) => (
                <li key={p.publicKey ?? i}>
                  {p.endpoint ?? 'no endpoint'}, handshake {p.latestHandshake ? `${duration(now.value / 1000 - p.latestHandshake)} ago` : 'never'}
                </li>
              ))}
            </ul>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

export default function AgentsPage() {
  const { query, route } = useLocation();
  const { cluster = '', status = '', cursor = '' } = query;
  const [revoking, setRevoking] = useState<Agent | null>(null);
  const [error, setError] = useState<string | null>(null);
  const poll = usePoll(
    async (signal) => {
      const q = new URLSearchParams(Object.entries({ cluster, status, cursor }).filter(([, v]) => v));
      const r = await api<{ agents: Agent[]; nextCursor: string | null }>('GET', `/v1/agents${q.size ? `?${q}` : ''}`, undefined, { signal });
      return { ...r, at: Date.now() };
    },
    2000,
    [cluster, status, cursor],
  );
  const go = (next: Record<string, string>) => {
    const q = new URLSearchParams(Object.entries({ cluster, status, cursor: '', ...next }).filter(([, v]) => v));
    route(`/agents${q.size ? `?${q}` : ''}`);
  };
  const age = (a: Agent) => (a.secondsSinceHeartbeat === null || !poll.data ? null : a.secondsSinceHeartbeat + (now.value - poll.data.at) / 1000);
  return (
    <Layout title="Nodes & agents">
      <form
        key={`${cluster}/${status}`}
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget.elements;
          go({ cluster: (f.namedItem('cluster') as HTMLInputElement).value.trim(), status: (f.namedItem('status') as HTMLSelectElement).value });
        }}
      >
        <label for="f-cluster">Cluster</label>
        <input id="f-cluster" name="cluster" defaultValue={cluster} />
        <label for="f-status">Status</label>
        <select id="f-status" name="status">
          <option value="">any</option>
          {['healthy', 'degraded', 'offline'].map((s) => (
            <option key={s} selected={s === status}>
              {s}
            </option>
          ))}
        </select>
        <button type="submit" class="secondary">
          Filter
        </button>
      </form>
      <ErrorBox error={poll.error ?? error} />
      {!poll.data ? (
        <p aria-busy="true">Loading…</p>
      ) : poll.data.agents.length === 0 ? (
        <p>
          No agent yet. <a href="/add">Add a server or a cluster</a>.
        </p>
      ) : (
        <div class="table-wrap stack-on-phone">
          <table>
            <thead>
              <tr>
                <th scope="col">Agent</th>
                <th scope="col">Cluster</th>
                <th scope="col">Status</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col">Version</th>
                <th scope="col">Host</th>
                <th scope="col">VPN</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {poll.data.agents.map((a) => {
                const s = age(a);
                return (
                  <tr key={a.id} data-agent={a.id}>
                    <td data-label="Agent">
                      <div>
                        <strong>{a.nid ?? a.role}</strong>
                        <div class="small muted">
                          {a.id} · {a.role}
                          {a.controlPlane ? ' · control plane' : ''}
                        </div>
                      </div>
                    </td>
                    <td data-label="Cluster">{a.cid}</td>
                    <td data-label="Status">
                      <Status value={a.revoked ? 'revoked' : a.status} />
                    </td>
                    <td data-label="Last heartbeat" class="age">{s === null ? 'never' : `${duration(s)} ago`}</td>
                    <td data-label="Version">{a.version ?? '–'}</td>
                    <td data-label="Host">
                      <Metrics m={a.metrics} />
                    </td>
                    <td data-label="VPN">
                      <VpnPeers vpn={a.vpn} />
                    </td>
                    <td data-label="">
                      {a.revoked ? null : (
                        <button type="button" class="danger" onClick={() => setRevoking(a)} aria-label={`Revoke ${a.nid ?? a.id}`}>
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {cursor ? (
          <button type="button" class="secondary" onClick={() => go({})}>
            First page
          </button>
        ) : null}
        {poll.data?.nextCursor ? (
          <button type="button" class="secondary" onClick={() => go({ cursor: poll.data!.nextCursor! })}>
            Next page
          </button>
        ) : null}
      </nav>
      <Confirm
        open={revoking !== null}
        title="Revoke this agent?"
        confirm="Revoke"
        onClose={() => setRevoking(null)}
        onConfirm={async () => {
          const a = revoking;
          setRevoking(null);
          if (!a) return;
          try {
            await api('POST', `/v1/agents/${a.id}/revoke`);
            setError(null);
            poll.reload();
          } catch (e) {
            setError(errorText(e));
          }
        }}
      >
        <p>
          {revoking?.nid ?? revoking?.id} loses its certificate at once: its connections are closed and the commands it holds go back to the queue. It must register again with a new token.
        </p>
      </Confirm>
    </Layout>
  );
}
