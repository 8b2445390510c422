/** Overview: clusters with their domain and agents by status, nodes by status, commands by state, recent failures (GET /v1/overview). */
import { useEffect } from 'preact/hooks';
import { api, takePrefetched, type CommandState } from '../api.ts';
import { ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

type Counts = Partial<Record<string, number>>;
export interface Overview {
  clusters: { cid: string; domain: string; agents: Counts; nodes: Counts; clusterAgents: Counts }[];
  clustersTotal: number;
  agents: Counts;
  clusterAgents: Counts;
  nodes: Counts;
  commands: Counts;
  recentFailures: { id: number; cluster: string; node: string | null; type: string; state: CommandState; error: { code: string; message: string } | null; finishedAt: string | null }[];
}

function Counts(props: { counts: Counts | undefined; label: string }) {
  const entries = Object.entries(props.counts ?? {});
  return (
    <ul class="counts" aria-label={props.label}>
      {entries.every(([, n]) => !n) ? <li class="muted">none</li> : null}
      {entries.filter(([, n]) => n).map(([k, n]) => (
        <li key={k}>
          <Status value={k} /> <strong>{n}</strong>
        </li>
      ))}
    </ul>
  );
}

export default function OverviewPage() {
  const { data, error } = usePoll((signal) => takePrefetched<Overview>('/v1/overview') ?? api<Overview>('GET', '/v1/overview', undefined, { signal }), 3000);
  // A User Timing mark once the figures are on screen (bench/console.ts reads it).
  const shown = !!data;
  useEffect(() => {
    if (shown && !performance.getEntriesByName('tether:overview-shown').length) performance.mark('tether:overview-shown');
  }, [shown]);
  return (
    <Layout title="Overview">
      <ErrorBox error={error} />
      {!data ? (
        <p aria-busy="true">Loading…</p>
      ) : (
        <>
          <div class="cards">
            <section class="card">
              <h2>Agents</h2>
              <Counts counts={data.agents} label="agents by status" />
            </section>
            <section class="card">
              <h2>Nodes</h2>
              <Counts counts={data.nodes} label="nodes by status" />
            </section>
            <section class="card">
              <h2>Commands</h2>
              <Counts counts={data.commands} label="commands by state" />
            </section>
          </div>
          <section>
            <h2>Clusters{data.clustersTotal > data.clusters.length ? ` (the first ${data.clusters.length} of ${data.clustersTotal})` : ''}</h2>
            {data.clusters.length === 0 ? (
              <p>
                No cluster yet. <a href="/add">Add a server or a cluster</a>.
              </p>
            ) : (
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Cluster</th>
                      <th scope="col">Domain</th>
                      <th scope="col">Nodes</th>
                      <th scope="col">Cluster agents</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.clusters.map((c) => (
                      <tr key={c.cid}>
                        <td>
                          <a href={`/agents?cluster=${encodeURIComponent(c.cid)}`}>{c.cid}</a>
                        </td>
                        <td>
                          <code>{c.domain}</code>
                        </td>
                        <td>
                          <Counts counts={c.nodes} label={`nodes of ${c.cid}`} />
                        </td>
                        <td>
                          <Counts counts={c.clusterAgents} label={`cluster agents of ${c.cid}`} />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
          <section>
            <h2>Recent failures</h2>
            {(data.recentFailures ?? []).length === 0 ? (
              <p class="muted">No failed job.</p>
            ) : (
              <ul class="plain">
                {data.recentFailures!.map((c) => (
                  <li key={c.id}>
                    <a href={`/jobs/${c.id}`}>
                      #{c.id} {c.type}
                    </a>{' '}
                    on {c.cluster}
                    {c.node ? `/${c.node}` : ''} <Status value={c.state} /> {ago(c.finishedAt)}: {c.error?.message ?? ''}
                  </li>
                ))}
              </ul>
            )}
          </section>
        </>
      )}
    </Layout>
  );
}
