/** Instances: state and sync status (polled), and a form deploying a registered bundle to a cluster. */
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, errorText, type BundleSource, type Cluster, type Instance } from '../api.ts';
import { ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

/** `name=value` lines to typed inputs: true/false booleans, numbers as numbers, the rest strings. */
export function parseInputLines(text: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq < 1) throw new Error(`"${line}": write name=value`);
    const k = line.slice(0, eq).trim();
    const v = line.slice(eq + 1).trim();
    out[k] = v === 'true' ? true : v === 'false' ? false : v !== '' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

export default function InstancesPage() {
  const { route, query } = useLocation();
  const cursor = query.cursor ?? '';
  const list = usePoll((signal) => api<{ instances: Instance[]; nextCursor: string | null }>('GET', `/v1/instances${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, { signal }), 3000, [cursor]);
  const bundles = usePoll((signal) => api<{ bundles: BundleSource[] }>('GET', '/v1/bundles', undefined, { signal }), 60_000);
  const clusters = usePoll((signal) => api<{ clusters: Cluster[] }>('GET', '/v1/clusters', undefined, { signal }), 60_000);
  const [error, setError] = useState<string | null>(null);
  return (
    <Layout title="Instances">
      <ErrorBox error={list.error ?? error} />
      {!list.data ? (
        <p aria-busy="true">Loading…</p>
      ) : list.data.instances.length === 0 ? (
        <p>No instance yet.</p>
      ) : (
        <div class="table-wrap stack-on-phone">
          <table>
            <thead>
              <tr>
                <th scope="col">Instance</th>
                <th scope="col">Bundle</th>
                <th scope="col">Cluster</th>
                <th scope="col">State</th>
                <th scope="col">Sync</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {list.data.instances.map((i) => (
                <tr key={i.osid}>
                  <td data-label="Instance">
                    <a href={`/instances/${i.osid}`}>{i.osid}</a>
                  </td>
                  <td data-label="Bundle">
                    {i.bundle.name} {i.bundle.version}
                  </td>
                  <td data-label="Cluster">{i.cluster}</td>
                  <td data-label="State">
                    <Status value={i.state} />
                  </td>
                  <td data-label="Sync">
                    <Status value={i.syncStatus} />
                  </td>
                  <td data-label="Updated">{ago(i.updatedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager" aria-label="Pages">
        {cursor ? (
          <button type="button" class="secondary" onClick={() => route('/instances')}>
            First page
          </button>
        ) : null}
        {list.data?.nextCursor ? (
          <button type="button" class="secondary" onClick={() => route(`/instances?cursor=${encodeURIComponent(list.data!.nextCursor!)}`)}>
            Next page
          </button>
        ) : null}
      </nav>
      <section>
        <h2>Deploy a bundle</h2>
        <form
          class="stack"
          onSubmit={async (e) => {
            e.preventDefault();
            const f = e.currentTarget.elements;
            try {
              const inputs = parseInputLines((f.namedItem('inputs') as HTMLTextAreaElement).value);
              const r = await api<{ osid: string }>('POST', '/v1/instances', { bundle: (f.namedItem('bundle') as HTMLSelectElement).value, cluster: (f.namedItem('cluster') as HTMLSelectElement).value, inputs });
              route(`/instances/${r.osid}`);
            } catch (err) {
              setError(errorText(err));
            }
          }}
        >
          <label for="d-bundle">Bundle</label>
          <select id="d-bundle" name="bundle" required>
            {(bundles.data?.bundles ?? []).map((b) => (
              <option key={b.name} value={b.name}>
                {b.name} ({b.ref})
              </option>
            ))}
          </select>
          <label for="d-cluster">Cluster</label>
          <select id="d-cluster" name="cluster" required>
            {(clusters.data?.clusters ?? []).map((c) => (
              <option key={c.cid}>{c.cid}</option>
            ))}
          </select>
          <label for="d-inputs">Inputs (one name=value a line; the bundle's defaults for the rest)</label>
          <textarea id="d-inputs" name="inputs" rows={4} spellcheck={false} />
          <button type="submit">Deploy</button>
        </form>
      </section>
    </Layout>
  );
}
