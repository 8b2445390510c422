/**
 * Adding a server or a cluster: a one-time bootstrap token (POST /v1/tokens) and the exact
 * command to run with it, exactly as the control plane answers it, a copy button, and the token's expiry counting down. A new cluster can be created first.
 */
import { useState } from 'preact/hooks';
import { api, errorText, type Cluster } from '../api.ts';
import { CopyButton, ErrorBox, Layout, usePoll } from '../components.tsx';
import { until } from '../time.ts';

interface TokenAnswer {
  token: string;
  expiresAt: string;
  /** The exact command that enrols the agent (the control plane builds it: common/install-commands.ts). */
  command: string;
  /** PEM of the CA certificate the command reads from ca.crt. */
  caCert: string;
}

export default function AddPage() {
  const clusters = usePoll((signal) => api<{ clusters: Cluster[] }>('GET', '/v1/clusters', undefined, { signal }), 30_000);
  const [error, setError] = useState<string | null>(null);
  const [result, setResult] = useState<{ command: string; expiresAt: string; caCert: string } | null>(null);
  const [role, setRole] = useState<'node' | 'cluster-agent'>('node');
  const list = clusters.data?.clusters ?? [];
  return (
    <Layout title="Add a server or a cluster">
      <ErrorBox error={clusters.error ?? error} />
      <form
        class="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          const f = e.currentTarget.elements;
          const cid = (f.namedItem('cluster') as HTMLSelectElement).value;
          const controlPlane = (f.namedItem('cp') as HTMLInputElement | null)?.checked ?? false;
          const ttl = Number((f.namedItem('ttl') as HTMLSelectElement).value);
          setError(null);
          try {
            const t = await api<TokenAnswer>('POST', '/v1/tokens', { cluster: cid, role, ttlSeconds: ttl, ...(role === 'node' ? { controlPlane } : {}) });
            setResult({ command: t.command, expiresAt: t.expiresAt, caCert: t.caCert });
          } catch (err) {
            setError(errorText(err));
          }
        }}
      >
        <fieldset>
          <legend>What to add</legend>
          <label class="inline">
            <input type="radio" name="role" value="node" checked={role === 'node'} onChange={() => setRole('node')} /> A server (node agent)
          </label>
          <label class="inline">
            <input type="radio" name="role" value="cluster-agent" checked={role === 'cluster-agent'} onChange={() => setRole('cluster-agent')} /> A Kubernetes cluster (cluster agent, Helm)
          </label>
        </fieldset>
        <label for="add-cluster">Cluster</label>
        <select id="add-cluster" name="cluster" required>
          {list.map((c) => (
            <option key={c.cid} value={c.cid}>
              {c.cid} ({c.domain})
            </option>
          ))}
        </select>
        {role === 'node' ? (
          <>
            <label class="inline">
              <input type="checkbox" name="cp" /> Kubernetes control-plane node
            </label>
          </>
        ) : null}
        <label for="add-ttl">Token valid for</label>
        <select id="add-ttl" name="ttl">
          <option value="900">15 minutes</option>
          <option value="3600" selected>
            1 hour
          </option>
          <option value="86400">1 day</option>
        </select>
        <button type="submit" disabled={list.length === 0}>
          Create token
        </button>
      </form>
      {result ? (
        <section aria-live="polite" class="result">
          <h2>Run this {role === 'node' ? 'on the server' : 'against the cluster'}</h2>
          <pre class="command" id="command">
            <code>{result.command}</code>
          </pre>
          <CopyButton text={result.command} label="Copy command" />
          <p>
            The token works once and expires in <strong class="countdown">{until(result.expiresAt)}</strong>. The command reads the control plane's CA certificate from <code>ca.crt</code>: save it there first.
          </p>
          <details>
            <summary>ca.crt</summary>
            <pre class="command" id="ca-cert" tabIndex={0} aria-label="CA certificate">
              <code>{result.caCert}</code>
            </pre>
            <CopyButton text={result.caCert} label="Copy CA certificate" />
          </details>
        </section>
      ) : null}
      <details>
        <summary>Create a cluster</summary>
        <form
          class="stack"
          onSubmit={async (e) => {
            e.preventDefault();
            const input = e.currentTarget.elements.namedItem('cid') as HTMLInputElement;
            try {
              await api('POST', '/v1/clusters', { cid: input.value.trim() });
              input.value = '';
              setError(null);
              clusters.reload();
            } catch (err) {
              setError(errorText(err));
            }
          }}
        >
          <label for="new-cid">Cluster id</label>
          <input id="new-cid" name="cid" required pattern="[a-z0-9]([\-a-z0-9]*[a-z0-9])?" maxLength={40} />
          <button type="submit" class="secondary">
            Create cluster
          </button>
        </form>
      </details>
    </Layout>
  );
}
