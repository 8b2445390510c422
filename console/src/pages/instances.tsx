/** Instances: state and sync status (polled), and a form deploying a registered bundle to a cluster (generated from its typed inputs). */
import { useLocation } from 'preact-iso';
import { api, type BundleSource, type Cluster, type Instance } from '../api.ts';
import { DeployForm } from './deploy-form.tsx';
import { ErrorBox, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

export default function InstancesPage() {
  const { route, query } = useLocation();
  const cursor = query.cursor ?? '';
  const list = usePoll((signal) => api<{ instances: Instance[]; nextCursor: string | null }>('GET', `/v1/instances${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, { signal }), 3000, [cursor]);
  const bundles = usePoll((signal) => api<{ bundles: BundleSource[] }>('GET', '/v1/bundles', undefined, { signal }), 60_000);
  const clusters = usePoll((signal) => api<{ clusters: Cluster[] }>('GET', '/v1/clusters', undefined, { signal }), 60_000);
  return (
    <Layout title="Instances">
      <ErrorBox error={list.error} />
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
        <DeployForm bundles={bundles.data?.bundles ?? []} clusters={clusters.data?.clusters ?? []} onDeployed={(osid) => route(`/instances/${osid}`)} />
      </section>
    </Layout>
  );
}
