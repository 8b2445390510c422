/**
 * The deploy form, generated from the bundle's typed inputs as the API answers them at the source's
 * registered commit (GET /v1/bundles): a number field, a checkbox, or a text field per input, its
 * default filled in, required ones marked, descriptions as hints; checked here before sending (a
 * required input left empty, a number that is not one), and the server's `invalid_inputs` problems
 * (`input "<name>" …`) shown next to their field.
 */
import { useState } from 'preact/hooks';
import { ApiError, api, errorText, type BundleInput, type BundleSource, type Cluster } from '../api.ts';
import { ErrorBox } from '../components.tsx';

type Value = string | number | boolean;

/** The server's invalid_inputs message (problems joined by "; ") split per input; the rest under "". */
export function inputProblems(message: string, names: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of message.split('; ')) {
    const m = /^(?:unknown )?input "([^"]+)"/.exec(p);
    const k = m && names.includes(m[1]!) ? m[1]! : '';
    (out[k] ??= []).push(p);
  }
  return out;
}

/** The form's values as typed inputs, or the problems found before sending. */
export function readInputs(form: HTMLFormElement, defs: Record<string, BundleInput>): { inputs: Record<string, Value>; problems: Record<string, string[]> } {
  const inputs: Record<string, Value> = {};
  const problems: Record<string, string[]> = {};
  for (const [name, def] of Object.entries(defs)) {
    const el = form.elements.namedItem(`input.${name}`) as HTMLInputElement | null;
    if (!el) continue;
    if (def.type === 'boolean') {
      inputs[name] = el.checked;
      continue;
    }
    const raw = el.value.trim();
    if (raw === '' || (def.type === 'number' && el.validity.badInput)) {
      if (def.type === 'number' && el.validity.badInput) problems[name] = [`${name} must be a number`];
      else if (def.required) problems[name] = [`${name} is required`];
      continue; // empty: the bundle's default
    }
    if (def.type === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n)) problems[name] = [`${name} must be a number`];
      else inputs[name] = n;
    } else inputs[name] = el.value;
  }
  return { inputs, problems };
}

function Field(props: { name: string; def: BundleInput; problems: string[] | undefined }) {
  const { name, def, problems } = props;
  const id = `dep-${name}`;
  const described = [def.description ? `${id}-hint` : '', problems ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  const hint = def.description ? (
    <span class="hint" id={`${id}-hint`}>
      {def.description}
    </span>
  ) : null;
  const error = problems ? (
    <span class="field-error" id={`${id}-error`}>
      {problems.join('; ')}
    </span>
  ) : null;
  const aria = { 'aria-required': def.required ? ('true' as const) : undefined, 'aria-describedby': described, 'aria-invalid': problems ? ('true' as const) : undefined };
  if (def.type === 'boolean') {
    return (
      <div class="field">
        <label class="inline">
          <input type="checkbox" name={`input.${name}`} defaultChecked={def.default === true} aria-describedby={described} aria-invalid={problems ? 'true' : undefined} /> {name}
        </label>
        {hint}
        {error}
      </div>
    );
  }
  return (
    <div class="field">
      <label for={id}>
        {name}
        {def.required ? <span class="required"> (required)</span> : null}
      </label>
      {def.type === 'number' ? (
        <input id={id} name={`input.${name}`} type="number" step="any" inputMode="decimal" defaultValue={def.default === undefined ? '' : String(def.default)} {...aria} data-type="number" />
      ) : (
        <input id={id} name={`input.${name}`} type="text" defaultValue={def.default === undefined ? '' : String(def.default)} {...aria} data-type="string" />
      )}
      {hint}
      {error}
    </div>
  );
}

export function DeployForm(props: { bundles: BundleSource[]; clusters: Cluster[]; onDeployed: (osid: string) => void }) {
  const [chosen, setChosen] = useState<string | null>(null);
  const [problems, setProblems] = useState<Record<string, string[]>>({});
  const [error, setError] = useState<string | null>(null);
  const source = props.bundles.find((b) => b.name === chosen) ?? props.bundles[0];
  const defs = source?.bundle?.inputs ?? {};
  return (
    <form
      class="stack"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const form = e.currentTarget;
        if (!source) return;
        const read = readInputs(form, defs);
        setProblems(read.problems);
        setError(null);
        if (Object.keys(read.problems).length) return;
        try {
          const r = await api<{ osid: string }>('POST', '/v1/instances', { bundle: source.name, cluster: (form.elements.namedItem('cluster') as HTMLSelectElement).value, inputs: read.inputs });
          props.onDeployed(r.osid);
        } catch (err) {
          if (err instanceof ApiError && err.code === 'invalid_inputs') {
            const p = inputProblems(err.message, Object.keys(defs));
            const { '': rest, ...fields } = p;
            setProblems(fields);
            setError(rest ? `${rest.join('; ')} (invalid_inputs)` : 'Some inputs were refused: see the fields below.');
          } else setError(errorText(err));
        }
      }}
    >
      <ErrorBox error={error} />
      <label for="d-bundle">Bundle</label>
      <select
        id="d-bundle"
        name="bundle"
        required
        value={source?.name}
        onChange={(e) => {
          setChosen(e.currentTarget.value);
          setProblems({});
          setError(null);
        }}
      >
        {props.bundles.map((b) => (
          <option key={b.name} value={b.name}>
            {b.bundle ? `${b.name} ${b.bundle.version}` : b.name} ({b.ref})
          </option>
        ))}
      </select>
      {source?.bundle?.description ? <p class="hint">{source.bundle.description}</p> : null}
      {source && !source.bundle ? <p class="hint">{source.bundleError ? `The bundle at the registered commit does not validate: ${source.bundleError}` : 'Inputs not known: register the source again to see them.'}</p> : null}
      <label for="d-cluster">Cluster</label>
      <select id="d-cluster" name="cluster" required>
        {props.clusters.map((c) => (
          <option key={c.cid}>{c.cid}</option>
        ))}
      </select>
      {Object.keys(defs).length ? (
        <fieldset key={`${source?.name}@${source?.commit}`} class="stack">
          <legend>Inputs (left empty: the bundle's default)</legend>
          {Object.entries(defs).map(([k, def]) => (
            <Field key={k} name={k} def={def} problems={problems[k]} />
          ))}
        </fieldset>
      ) : null}
      <button type="submit" disabled={!source}>
        Deploy
      </button>
    </form>
  );
}
