/** Jobs: newest first, filtered by cluster, type and state on the server, 50 a page (cursor), polled. */
import { useLocation } from 'preact-iso';
import { api, COMMAND_STATES, type Command } from '../api.ts';
import { ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

const PAGE = 50;
const TYPES = ['helm', 'manifest', 'tofu', 'flow', 'diff', 'preflight', 'install', 'vpn-sync'];

export default function JobsPage() {
  const { query, route } = useLocation();
  const { cluster = '', state = '', type = '', cursor = '' } = query;
  const params = new URLSearchParams({ limit: String(PAGE), ...Object.fromEntries(Object.entries({ cluster, state, type, cursor }).filter(([, v]) => v)) });
  const poll = usePoll((signal) => api<{ commands: Command[]; nextCursor: string | null }>('GET', `/v1/commands?${params}`, undefined, { signal }), 3000, [params.toString()]);
  const shown = poll.data?.commands ?? [];
  const go = (next: Record<string, string>) => {
    const p = new URLSearchParams(Object.entries({ cluster, state, type, cursor: '', ...next }).filter(([, v]) => v) as [string, string][]);
    route(`/jobs${p.size ? `?${p}` : ''}`);
  };
  return (
    <Layout title="Jobs">
      <form
        key={`${cluster}/${type}/${state}`}
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget.elements;
          go({ cluster: (f.namedItem('cluster') as HTMLInputElement).value.trim(), state: (f.namedItem('state') as HTMLSelectElement).value, type: (f.namedItem('type') as HTMLSelectElement).value });
        }}
      >
        <label for="j-cluster">Cluster</label>
        <input id="j-cluster" name="cluster" defaultValue={cluster} />
        <label for="j-type">Type</label>
        <select id="j-type" name="type">
          <option value="">any</option>
          {TYPES.map((t) => (
            <option key={t} selected={t === type}>
              {t}
            </option>
          ))}
        </select>
        <label for="j-state">State</label>
        <select id="j-state" name="state">
          <option value="">any</option>
          {COMMAND_STATES.map((s) => (
            <option key={s} selected={s === state}>
              {s}
            </option>
          ))}
        </select>
        <button type="submit" class="secondary">
          Filter
        </button>
        <a class="button" href="/submit">
          Submit a command
        </a>
      </form>
      <ErrorBox error={poll.error} />
      {!poll.data ? (
        <p aria-busy="true">Loading…</p>
      ) : shown.length === 0 ? (
        <p>No job{cluster || state || type ? ' matches' : ' yet'}.</p>
      ) : (
        <div class="table-wrap stack-on-phone">
          <table>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Type</th>
                <th scope="col">Target</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((c) => (
                <tr key={c.id}>
                  <td data-label="Job">
                    <a href={`/jobs/${c.id}`}>#{c.id}</a>
                  </td>
                  <td data-label="Type">{c.type}</td>
                  <td data-label="Target">
                    {c.target.cluster}
                    {c.target.node ? `/${c.target.node}` : ''}
                  </td>
                  <td data-label="State">
                    <Status value={c.state} />
                  </td>
                  <td data-label="Created">{ago(c.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {cursor ? (
          <button type="button" class="secondary" onClick={() => go({})}>
            Newest
          </button>
        ) : null}
        {poll.data?.nextCursor ? (
          <button type="button" class="secondary" onClick={() => go({ cursor: poll.data!.nextCursor! })}>
            Older
          </button>
        ) : null}
      </nav>
    </Layout>
  );
}
