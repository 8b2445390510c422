/**
 * Submit a command from YAML: {target, type, spec, …} as `tether submit -f` takes it. The YAML is
 * parsed here and posted as JSON (POST /v1/commands); a 400 names the fields that fail, and each
 * is shown next to the line it is written on (yaml-lines.ts). The YAML parser is loaded with this page only.
 */
import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, ApiError, errorText } from '../api.ts';
import { ErrorBox, Layout } from '../components.tsx';

const EXAMPLE = `target: {cluster: prod1, node: n1}
type: install
spec:
  dryRun: true
`;

interface LineError {
  line: number | null;
  path: string;
  message: string;
}

export default function SubmitPage() {
  const { route } = useLocation();
  const [text, setText] = useState(EXAMPLE);
  const [errors, setErrors] = useState<LineError[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const lines = text.split('\n');
  const byLine = new Map<number, LineError[]>();
  for (const e of errors) if (e.line !== null) byLine.set(e.line, [...(byLine.get(e.line) ?? []), e]);
  const general = errors.filter((e) => e.line === null);
  return (
    <Layout title="Submit a command">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          setErrors([]);
          const { parse } = await import('yaml');
          const { errorsByLine } = await import('../yaml-lines.ts');
          try {
            let body: unknown;
            try {
              body = parse(text);
            } catch (err) {
              const m = /at line (\d+)/.exec(String(err));
              setErrors([{ line: m ? Number(m[1]) : null, path: '', message: (err as Error).message.split('\n')[0]! }]);
              return;
            }
            const r = await api<{ id: number }>('POST', '/v1/commands', body);
            route(`/jobs/${r.id}`);
          } catch (err) {
            if (err instanceof ApiError && err.status === 400) setErrors(errorsByLine(text, err.message));
            else setError(errorText(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="yaml">Command (YAML)</label>
        <div class="editor">
          <ol class="gutter" aria-hidden="true">
            {lines.map((_, i) => (
              <li key={i} class={byLine.has(i + 1) ? 'bad' : undefined}>
                {i + 1}
              </li>
            ))}
          </ol>
          <textarea
            id="yaml"
            name="yaml"
            rows={Math.max(12, lines.length + 1)}
            spellcheck={false}
            value={text}
            aria-invalid={errors.length > 0}
            aria-describedby="yaml-errors"
            onInput={(e) => setText(e.currentTarget.value)}
            wrap="off"
          />
        </div>
        <div id="yaml-errors" role="alert">
          {general.map((e, i) => (
            <p class="error" key={`g${i}`}>
              {e.path ? <code>{e.path}</code> : null} {e.message}
            </p>
          ))}
          {[...byLine.entries()]
            .sort((a, b) => a[0] - b[0])
            .map(([line, es]) => (
              <p class="error line-error" key={line} data-line={line}>
                Line {line}: {es.map((e) => `${e.path ? `${e.path}: ` : ''}${e.message}`).join('; ')}
              </p>
            ))}
        </div>
        <ErrorBox error={error} />
        <button type="submit" disabled={busy}>
          Submit
        </button>
      </form>
    </Layout>
  );
}
