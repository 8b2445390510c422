/**
 * One instance: state and sync status, endpoints as links, outputs, history of its desired state,
 * upgrade (a form generated from its inputs, typed by their current values), drift check (POST
 * /v1/instances/{osid}/diff, then the diff job's outputs) and delete with a confirmation.
 */
import { useState } from 'preact/hooks';
import { useLocation, useRoute } from 'preact-iso';
import { api, errorText, type Command, type Instance, type InstanceVersion } from '../api.ts';
import { Confirm, ErrorBox, KeyValues, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

function InputField(props: { name: string; value: unknown }) {
  const id = `in-${props.name}`;
  if (typeof props.value === 'boolean') {
    return (
      <label class="inline">
        <input type="checkbox" name={props.name} data-type="boolean" defaultChecked={props.value} /> {props.name}
      </label>
    );
  }
  return (
    <>
      <label for={id}>{props.name}</label>
      {typeof props.value === 'number' ? (
        <input id={id} name={props.name} data-type="number" type="number" step="any" defaultValue={String(props.value)} />
      ) : (
        <input id={id} name={props.name} data-type="string" type="text" defaultValue={String(props.value ?? '')} />
      )}
    </>
  );
}

interface DiffResource {
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  address?: string;
  status: string;
  diff?: string;
  error?: string;
}
interface DiffStep {
  name: string;
  state?: string;
  outputs?: { resources?: DiffResource[]; release?: { status?: string; revision?: number } };
  error?: { message: string } | null;
}

/** The diff job's outputs, per step and object: status, and the unified diff of what drifted (like kubectl diff). */
function DriftReport(props: { outputs: Record<string, unknown> }) {
  const steps = (props.outputs.steps ?? []) as DiffStep[];
  if (!steps.length) return <pre class="log" tabIndex={0} aria-label="Drift report">{JSON.stringify(props.outputs, null, 2)}</pre>;
  return (
    <div class="table-wrap">
      <table aria-label="Drift report">
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Object</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {steps.flatMap((st) =>
            (st.outputs?.resources ?? []).map((r, n) => (
              <tr key={`${st.name}/${n}`}>
                <td>{st.name}</td>
                <td>
                  <code>{r.address ?? `${r.kind}/${r.namespace ? `${r.namespace}/` : ''}${r.name}`}</code>
                  {r.diff ? (
                    <pre class="log" tabIndex={0} aria-label={`Diff of ${r.address ?? r.name}`}>
                      {r.diff}
                    </pre>
                  ) : null}
                  {r.error ? <p class="error">{r.error}</p> : null}
                </td>
                <td>
                  <Status value={r.status} />
                </td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </div>
  );
}

export default function InstancePage() {
  const { params } = useRoute();
  const { route } = useLocation();
  const osid = params.osid ?? '';
  const inst = usePoll((signal) => api<Instance>('GET', `/v1/instances/${osid}`, undefined, { signal }), 3000, [osid]);
  const versions = usePoll((signal) => api<{ versions: InstanceVersion[] }>('GET', `/v1/instances/${osid}/versions?limit=20`, undefined, { signal }), 10_000, [osid]);
  const [diffJob, setDiffJob] = useState<number | null>(null);
  const diff = usePoll(async (signal) => (diffJob ? api<Command>('GET', `/v1/commands/${diffJob}`, undefined, { signal }) : null), 2000, [diffJob]);
  const [error, setError] = useState<string | null>(null);
  const [deleting, setDeleting] = useState(false);
  const i = inst.data;
  const endpoints = i ? [i.host, ...Object.values(i.ports)].filter((h, n, a) => h && a.indexOf(h) === n) : [];
  return (
    <Layout title={`Instance ${osid}`}>
      <ErrorBox error={inst.error ?? error} />
      {!i ? (
        <p aria-busy="true">Loading…</p>
      ) : (
        <>
          <dl class="kv">
            <div>
              <dt>State</dt>
              <dd>
                <Status value={i.state} /> (<a href={`/jobs/${i.job.id}`}>job #{i.job.id}</a>, {i.job.action} <Status value={i.job.state} />)
              </dd>
            </div>
            <div>
              <dt>Sync</dt>
              <dd>
                <Status value={i.syncStatus} /> {i.lastCheckedAt ? `checked ${ago(i.lastCheckedAt)}` : 'never checked'}
              </dd>
            </div>
            <div>
              <dt>Bundle</dt>
              <dd>
                {i.bundle.name} {i.bundle.version} <code>{i.bundle.commit.slice(0, 12)}</code>
              </dd>
            </div>
            <div>
              <dt>Cluster</dt>
              <dd>
                {i.cluster} / {i.namespace}
              </dd>
            </div>
            <div>
              <dt>Version</dt>
              <dd>{i.version}</dd>
            </div>
          </dl>
          {i.job.error ? <p class="error">{i.job.error.message}</p> : null}
          <section>
            <h2>Endpoints</h2>
            <p class="small muted">The instance's host names, served by the cluster's ingress.</p>
            <ul class="plain endpoints">
              {endpoints.map((h) => (
                <li key={h}>
                  <a href={`http://${h}/`} target="_blank" rel="noopener noreferrer">
                    http://{h}/
                  </a>
                </li>
              ))}
            </ul>
          </section>
          <section>
            <h2>Outputs</h2>
            <KeyValues values={i.outputs} link />
            {Object.keys(i.sensitiveOutputs).length ? <p class="small muted">Sensitive outputs (kept in the cluster): {Object.keys(i.sensitiveOutputs).join(', ')}</p> : null}
          </section>
          <section>
            <h2>Drift</h2>
            <button
              type="button"
              class="secondary"
              onClick={async () => {
                try {
                  const r = await api<{ jobId: number }>('POST', `/v1/instances/${osid}/diff`);
                  setDiffJob(r.jobId);
                  setError(null);
                } catch (e) {
                  setError(errorText(e));
                }
              }}
            >
              Check for drift
            </button>
            {diff.data ? (
              <div class="diff">
                <p>
                  <a href={`/jobs/${diff.data.id}`}>Diff job #{diff.data.id}</a> <Status value={diff.data.state} />
                </p>
                {diff.data.outputs ? <DriftReport outputs={diff.data.outputs} /> : null}
              </div>
            ) : null}
          </section>
          <section>
            <h2>Upgrade</h2>
            <form
              key={i.version}
              class="stack"
              onSubmit={async (e) => {
                e.preventDefault();
                const inputs: Record<string, unknown> = {};
                for (const el of [...e.currentTarget.querySelectorAll<HTMLInputElement>('input[data-type]')]) {
                  const t = el.dataset.type;
                  inputs[el.name] = t === 'boolean' ? el.checked : t === 'number' ? Number(el.value) : el.value;
                }
                try {
                  await api('POST', `/v1/instances/${osid}/deploy`, { inputs });
                  setError(null);
                  inst.reload();
                  versions.reload();
                } catch (err) {
                  setError(errorText(err));
                }
              }}
            >
              {Object.entries(i.inputs).map(([k, v]) => (
                <InputField key={k} name={k} value={v} />
              ))}
              <button type="submit">Upgrade</button>
            </form>
          </section>
          <section>
            <h2>History</h2>
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">Action</th>
                    <th scope="col">When</th>
                    <th scope="col">Commit</th>
                    <th scope="col">Job</th>
                  </tr>
                </thead>
                <tbody>
                  {[...(versions.data?.versions ?? [])].reverse().map((v) => (
                    <tr key={v.version}>
                      <td>{v.version}</td>
                      <td>{v.action}</td>
                      <td>{ago(v.createdAt)}</td>
                      <td>
                        <code>{v.bundle.commit.slice(0, 12)}</code>
                      </td>
                      <td>{v.job ? <a href={`/jobs/${v.job.id}`}>#{v.job.id}</a> : '–'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <button type="button" class="danger" onClick={() => setDeleting(true)}>
            Delete instance
          </button>
          <Confirm
            open={deleting}
            title={`Delete ${osid}?`}
            confirm="Delete"
            onClose={() => setDeleting(false)}
            onConfirm={async () => {
              setDeleting(false);
              try {
                await api('DELETE', `/v1/instances/${osid}`);
                route('/instances');
              } catch (e) {
                setError(errorText(e));
              }
            }}
          >
            <p>Everything the instance deployed is torn down, in reverse order.</p>
          </Confirm>
        </>
      )}
    </Layout>
  );
}
