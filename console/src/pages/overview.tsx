/** Overview: clusters with their domain and agents by status, nodes by status, commands by state, recent failures (GET /v1/overview). */
import { api, ApiError, type Agent, type Cluster, type Command } from '../api.ts';
import { ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

type Counts = Partial<Record<string, number>>;
export interface Overview {
  clusters: { cid: string; domain: string; agents?: Counts }[];
  agents?: Counts;
  nodes?: Counts;
  commands?: Counts;
  recentFailures?: Command[];
}

function Counts(props: { counts: Counts | undefined; label: string }) {
  const entries = Object.entries(props.counts ?? {});
  return (
    <ul class="counts" aria-label={props.label}>
      {entries.length === 0 ? <li class="muted">none</li> : null}
      {entries.map(([k, n]) => (
        <li key={k}>
          <Status value={k} /> <strong>{n}</strong>
        </li>
      ))}
    </ul>
  );
}

const count = <T,>(xs: T[], key: (x: T) => string): Counts => {
  const out: Counts = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
};

/** A control plane without GET /v1/overview (before it existed): the same figures from the lists, for the newest 200 commands. */
async function fromLists(signal: AbortSignal): Promise<Overview> {
  const [c, a, j] = await Promise.all([
    api<{ clusters: Cluster[] }>('GET', '/v1/clusters', undefined, { signal }),
    api<{ agents: Agent[] }>('GET', '/v1/agents', undefined, { signal }),
    api<{ commands: Command[] }>('GET', '/v1/commands?limit=200', undefined, { signal }),
  ]);
  const live = a.agents.filter((x) => !x.revoked);
  return {
    clusters: c.clusters.map((x) => ({ cid: x.cid, domain: x.domain, agents: count(live.filter((y) => y.cid === x.cid), (y) => y.status) })),
    agents: count(live, (x) => x.status),
    nodes: count(live.filter((x) => x.role === 'node'), (x) => x.status),
    commands: count(j.commands, (x) => x.state),
    recentFailures: j.commands.filter((x) => x.state === 'failed' || x.state === 'timed_out').slice(0, 10),
  };
}

let hasOverview = true;
async function load(signal: AbortSignal): Promise<Overview> {
  if (hasOverview) {
    try {
      return await api<Overview>('GET', '/v1/overview', undefined, { signal });
    } catch (e) {
      if (!(e instanceof ApiError && e.code === 'route_not_found')) throw e;
      hasOverview = false;
    }
  }
  return fromLists(signal);
}

export default function OverviewPage() {
  const { data, error } = usePoll(load, 3000);
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
            <h2>Clusters</h2>
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
                      <th scope="col">Agents</th>
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
                          <Counts counts={c.agents} label={`agents of ${c.cid}`} />
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
                    on {c.target.cluster}
                    {c.target.node ? `/${c.target.node}` : ''} <Status value={c.state} /> {ago(c.finishedAt)}: {c.error?.message ?? ''}
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
