/**
 * One job: state, attempts, outputs, error, cancel, and its log streaming live over the existing
 * Server-Sent Events (GET /v1/commands/{id}/logs?follow=1). After a dropped connection the stream
 * is opened again from the last line received (after=<id>), so no line is shown twice or lost.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { useRoute } from 'preact-iso';
import { api, errorText, TERMINAL, type Command } from '../api.ts';
import { ErrorBox, KeyValues, Layout, Status, usePoll } from '../components.tsx';
import { ago } from '../time.ts';

interface Line {
  id: number;
  stream: string;
  text: string;
}

function useLogStream(id: string) {
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState<'connecting' | 'streaming' | 'ended' | 'reconnecting'>('connecting');
  useEffect(() => {
    let last = 0;
    let es: EventSource | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const open = () => {
      es = new EventSource(`/v1/commands/${id}/logs?follow=1&after=${last}`);
      es.onopen = () => setStatus('streaming');
      es.addEventListener('log', (ev) => {
        const l = JSON.parse((ev as MessageEvent<string>).data) as Line;
        if (l.id <= last) return;
        last = l.id;
        setLines((prev) => (prev.length >= 5000 ? [...prev.slice(-4999), l] : [...prev, l]));
      });
      es.addEventListener('end', () => {
        stopped = true;
        es?.close();
        setStatus('ended');
      });
      es.onerror = () => {
        es?.close();
        if (stopped) return;
        setStatus('reconnecting');
        retry = setTimeout(open, 1000);
      };
    };
    open();
    return () => {
      stopped = true;
      es?.close();
      clearTimeout(retry);
    };
  }, [id]);
  return { lines, status };
}

export default function JobPage() {
  const { params } = useRoute();
  const id = params.id ?? '';
  const [error, setError] = useState<string | null>(null);
  const poll = usePoll((signal) => api<Command>('GET', `/v1/commands/${id}`, undefined, { signal }), 2000, [id]);
  const log = useLogStream(id);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const p = pre.current;
    if (p) p.scrollTop = p.scrollHeight;
  }, [log.lines.length]);
  const c = poll.data;
  return (
    <Layout title={`Job #${id}`}>
      <ErrorBox error={poll.error ?? error} />
      {!c ? (
        <p aria-busy="true">Loading…</p>
      ) : (
        <>
          <dl class="kv">
            <div>
              <dt>State</dt>
              <dd>
                <Status value={c.state} />
                {c.cancelRequested && !TERMINAL.includes(c.state) ? ' (cancel requested)' : ''}
              </dd>
            </div>
            <div>
              <dt>Type</dt>
              <dd>{c.type}</dd>
            </div>
            <div>
              <dt>Target</dt>
              <dd>
                {c.target.cluster}
                {c.target.node ? `/${c.target.node}` : ''}
              </dd>
            </div>
            <div>
              <dt>Attempts</dt>
              <dd>
                {c.attempts} of {c.maxAttempts}
              </dd>
            </div>
            <div>
              <dt>Agent</dt>
              <dd>{c.claimedBy ?? '–'}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{ago(c.createdAt)}</dd>
            </div>
            <div>
              <dt>Finished</dt>
              <dd>{c.finishedAt ? ago(c.finishedAt) : '–'}</dd>
            </div>
          </dl>
          {!TERMINAL.includes(c.state) ? (
            <button
              type="button"
              class="danger"
              onClick={async () => {
                try {
                  await api('POST', `/v1/commands/${id}/cancel`);
                  setError(null);
                  poll.reload();
                } catch (e) {
                  setError(errorText(e));
                }
              }}
            >
              Cancel job
            </button>
          ) : null}
          {c.error ? (
            <section>
              <h2>Error</h2>
              <p class="error">
                <code>{c.error.code}</code>: {c.error.message}
              </p>
            </section>
          ) : null}
          <section>
            <h2>Outputs</h2>
            <KeyValues values={c.outputs ?? null} empty={TERMINAL.includes(c.state) ? 'none' : 'when it ends'} link />
          </section>
        </>
      )}
      <section>
        <h2>
          Log <span class="small muted" data-log-status={log.status}>({log.status})</span>
        </h2>
        <pre class="log" ref={pre} tabIndex={0} aria-label="Job log" aria-live="off">
          {log.lines.length === 0 ? <span class="muted">no line yet</span> : null}
          {log.lines.map((l) => (
            <div key={l.id} class={l.stream === 'stderr' ? 'stderr' : undefined}>
              {l.text}
            </div>
          ))}
        </pre>
      </section>
    </Layout>
  );
}
