/**
 * Bundle validation: every problem of a bundle at once, each with its file and path (and line, in
 * bundle.yaml). Pure: the folder is seen through {@link BundleFs} (facts gathered by
 * bundle-fs.ts), so the decisions are unit-tested without a disk.
 */
import { posix } from 'node:path';
import { LineCounter, parseDocument, parseAllDocuments, type Document } from 'yaml';
import { isManifestFileName, jsonValue, secretRefSchema, outputRefSchema } from '../../common/specs.ts';
import {
  BUNDLE_FILE,
  KNOWN_OUTPUTS,
  MAX_TYPE_LENGTH,
  VALUE_REFS,
  bundleType,
  inputNameRe,
  inputSchema,
  outputSchema,
  resourceSchema,
  topLevelSchema,
  type Bundle,
  type BundleInput,
  type BundleOutput,
  type BundleResource,
} from './bundle.schema.ts';
import { resolveInputs, resolveStatic, type InputValue } from './compile.ts';
import { formatPath, mapRefs, walkRefs, type PathSeg } from './refs.ts';
import { parseTfModule, type TfModuleFacts } from './tf-module.ts';

export interface Problem {
  /** File relative to the bundle folder (bundle.yaml, or a file of a resource's source). */
  file: string;
  /** Where in the file: `resources[1].dependsOn[0]`, or "(root)". */
  path: string;
  line?: number;
  message: string;
}

/** What the validator may know about a path inside the bundle folder. */
export type PathFacts =
  | { kind: 'missing' }
  | { kind: 'outside'; detail: string }
  | { kind: 'file' }
  | {
      kind: 'dir';
      /** Names of the regular files directly inside (symbolic links resolved, inside the bundle). */
      files: string[];
      /** Paths (relative to the bundle folder) of symbolic links below it that lead outside the bundle. */
      escapingLinks: string[];
    };

export interface BundleFs {
  /** Facts about a lexically clean relative path (no `..`, not absolute). */
  facts(rel: string): PathFacts;
  /** Text of a file inside the bundle (a path `facts` reported). */
  read(rel: string): string;
}

export interface ValidationResult {
  bundle?: Bundle;
  problems: Problem[];
}

const MAX_ALIAS_COUNT = 100;

/** Formats problems one per line: `bundle.yaml:12: resources[1].source: ...`. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `${p.file}${p.line ? `:${p.line}` : ''}: ${p.path}: ${p.message}`).join('\n');
}

/** Lexical checks of a source path; the normalized path, or the problem. */
export function checkSourcePath(source: string): { path: string } | { problem: string } {
  if (source.includes('\0')) return { problem: 'must not contain NUL' };
  if (source.startsWith('/') || /^[A-Za-z]:[\\/]/.test(source) || source.startsWith('\\')) return { problem: `"${source}" is absolute: sources are relative to the bundle folder` };
  if (source.split(/[\\/]+/).includes('..')) return { problem: `"${source}" leaves the bundle folder ("..")` };
  if (source.startsWith('-')) return { problem: `"${source}" must not start with "-"` };
  const normalized = posix.normalize(source).replace(/\/+$/, '');
  return { path: normalized === '' ? '.' : normalized };
}

export function validateBundle(text: string, fs: BundleFs): ValidationResult {
  const problems: Problem[] = [];
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, strict: true });
  for (const e of doc.errors) {
    problems.push({ file: BUNDLE_FILE, path: '(root)', line: e.linePos?.[0]?.line, message: `invalid YAML: ${e.message.split('\n')[0]}` });
  }
  if (doc.errors.length) return { problems };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    return { problems: [{ file: BUNDLE_FILE, path: '(root)', message: `invalid YAML: ${err instanceof Error ? err.message : String(err)}` }] };
  }

  const add = (path: PathSeg[], message: string, file = BUNDLE_FILE) => {
    problems.push({ file, path: formatPath(path), ...(file === BUNDLE_FILE ? { line: lineOf(doc, lineCounter, path) } : {}), message });
  };
  const addIssues = (base: PathSeg[], issues: readonly { path: readonly PropertyKey[]; message: string; code?: string; keys?: string[] }[]) => {
    for (const i of issues) {
      const p = [...base, ...i.path.map((s) => (typeof s === 'number' ? s : String(s)))];
      if (i.code === 'unrecognized_keys' && i.keys) for (const k of i.keys) add([...p, k], `unknown field "${k}"`);
      else add(p, i.message);
    }
  };

  const top = topLevelSchema.safeParse(raw);
  if (!top.success) {
    addIssues([], top.error.issues);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { problems };
  }
  const t = (top.success ? top.data : raw) as Record<string, unknown>;

  // ------------------------------------------------------------ name/type
  if (top.success && !top.data.type && top.data.name.length > MAX_TYPE_LENGTH) {
    add(['name'], `the name is longer than ${MAX_TYPE_LENGTH} characters: declare a short "type" for instance ids`);
  }

  // ------------------------------------------------------------ inputs
  const inputs: Record<string, BundleInput> = {};
  const declaredInputs = new Set<string>();
  if (isRecord(t.inputs)) {
    for (const [name, v] of Object.entries(t.inputs)) {
      declaredInputs.add(name);
      if (!inputNameRe.test(name)) add(['inputs', name], 'an input name is letters, digits and "_", not starting with a digit');
      const r = inputSchema.safeParse(v);
      if (r.success) inputs[name] = r.data;
      else addIssues(['inputs', name], r.error.issues);
    }
  }

  // ------------------------------------------------------------ ports
  const ports = top.success ? (top.data.ports ?? []) : Array.isArray(t.ports) ? (t.ports.filter((p) => typeof p === 'number') as number[]) : [];

  // ------------------------------------------------------------ resources
  const rawResources = Array.isArray(t.resources) ? t.resources : [];
  const resources: (BundleResource | undefined)[] = rawResources.map((v, i) => {
    const r = resourceSchema.safeParse(v);
    if (r.success) return r.data;
    addIssues(['resources', i], r.error.issues);
    return undefined;
  });
  const names = new Map<string, number>();
  rawResources.forEach((v, i) => {
    const name = isRecord(v) && typeof v.name === 'string' ? v.name : undefined;
    if (name === undefined) return;
    if (names.has(name)) add(['resources', i, 'name'], `duplicate resource name "${name}" (also resources[${names.get(name)}])`);
    else names.set(name, i);
  });
  const typeOf = (name: string): BundleResource['type'] | undefined => {
    const i = names.get(name);
    return i === undefined ? undefined : resources[i]?.type;
  };

  // Sources: lexical checks, then what the folder holds.
  const moduleFacts = new Map<string, TfModuleFacts>();
  resources.forEach((r, i) => {
    if (!r) return;
    const at: PathSeg[] = ['resources', i, 'source'];
    const checked = checkSourcePath(r.source);
    if ('problem' in checked) return add(at, checked.problem);
    const facts = fs.facts(checked.path);
    if (facts.kind === 'missing') return add(at, `"${r.source}" does not exist in the bundle`);
    if (facts.kind === 'outside') return add(at, `"${r.source}" leads outside the bundle (${facts.detail})`);
    if (facts.kind === 'file') return add(at, `"${r.source}" is a file: a ${r.type} source is a folder`);
    for (const link of facts.escapingLinks) add(at, `symbolic link "${link}" leads outside the bundle`, link);
    const file = (f: string) => (checked.path === '.' ? f : `${checked.path}/${f}`);
    if (r.type === 'helm') {
      if (!facts.files.includes('Chart.yaml')) return add(at, `"${r.source}" is not a Helm chart (no Chart.yaml)`);
      checkChart(fs.read(file('Chart.yaml')), file('Chart.yaml'), add);
    } else if (r.type === 'tofu') {
      const tf = facts.files.filter((f) => f.endsWith('.tf'));
      if (tf.length === 0 && !facts.files.some((f) => f.endsWith('.tf.json'))) return add(at, `"${r.source}" is not an OpenTofu module (no *.tf file)`);
      // Modules written in JSON are not inspected further.
      if (!facts.files.some((f) => f.endsWith('.tf.json'))) moduleFacts.set(r.name, parseTfModule(tf.map((f) => fs.read(file(f)))));
    } else {
      const yamls = facts.files.filter(isManifestFileName).sort();
      if (yamls.length === 0) return add(at, `"${r.source}" holds no *.yaml, *.yml or *.json manifest`);
      for (const f of yamls) checkManifestFile(fs.read(file(f)), file(f), add);
    }
  });

  // tofu vars against the module's variables
  resources.forEach((r, i) => {
    const m = r && r.type === 'tofu' ? moduleFacts.get(r.name) : undefined;
    if (!r || !m) return;
    for (const k of Object.keys(r.vars ?? {})) if (!m.variables.has(k)) add(['resources', i, 'vars', k], `module "${r.source}" has no variable "${k}"`);
    for (const [k, v] of m.variables) if (!v.hasDefault && !Object.hasOwn(r.vars ?? {}, k)) add(['resources', i, 'vars'], `module variable "${k}" has no default: set it in vars`);
  });

  // ------------------------------------------------------------ references
  const checkRef = (path: PathSeg[], key: string, payload: unknown, self: string | undefined, deps: Set<string> | undefined) => {
    switch (key) {
      case 'inputRef':
        if (typeof payload !== 'string') add(path, 'inputRef names an input');
        else if (!declaredInputs.has(payload)) add(path, `unknown input "${payload}"`);
        break;
      case 'valueRef':
        if (typeof payload !== 'string' || !(VALUE_REFS as readonly string[]).includes(payload)) add(path, `unknown valueRef ${JSON.stringify(payload)} (one of ${VALUE_REFS.join(', ')})`);
        break;
      case 'hostRef': {
        const port = isRecord(payload) && Object.keys(payload).length === 1 ? payload.port : undefined;
        if (typeof port !== 'number') add(path, 'hostRef is {port: <number>}');
        else if (!ports.includes(port)) add(path, `port ${port} is not declared in ports`);
        break;
      }
      case 'secretRef': {
        const r = secretRefSchema.safeParse(payload);
        if (!r.success) add(path, `invalid secretRef: ${r.error.issues.map((x) => `${x.path.join('.') || '(root)'} ${x.message}`).join('; ')}`);
        break;
      }
      case 'outputRef': {
        const r = outputRefSchema.safeParse(payload);
        if (!r.success) {
          add(path, `invalid outputRef: ${r.error.issues.map((x) => `${x.path.join('.') || '(root)'} ${x.message}`).join('; ')}`);
          break;
        }
        const { step, key: outKey } = r.data;
        const type = typeOf(step);
        if (!names.has(step)) add([...path, 'step'], `unknown resource "${step}"`);
        else if (step === self) add([...path, 'step'], `a resource cannot use its own outputs`);
        else if (type === 'tofu') {
          const m = moduleFacts.get(step);
          if (m && !m.outputs.has(outKey)) add([...path, 'key'], `resource "${step}" (tofu) has no output "${outKey}"`);
        } else if (type && !KNOWN_OUTPUTS[type].includes(outKey)) {
          add([...path, 'key'], `resource "${step}" (${type}) has no output "${outKey}" (it reports ${KNOWN_OUTPUTS[type].join(', ')})`);
        }
        if (names.has(step) && step !== self) deps?.add(step);
        break;
      }
    }
  };
  const checkValueTree = (value: unknown, path: PathSeg[], self: string | undefined, deps: Set<string> | undefined) => {
    const plain = jsonValue.safeParse(value);
    if (!plain.success) add(path, plain.error.issues[0]?.message ?? 'not a JSON value');
    walkRefs(value, path, (key, payload, p) => checkRef(p, key, payload, self, deps));
  };

  // ------------------------------------------------------------ dependencies
  const edges = new Map<string, Set<string>>();
  resources.forEach((r, i) => {
    if (!r) return;
    const deps = new Set<string>();
    (r.dependsOn ?? []).forEach((d, j) => {
      if (!names.has(d)) add(['resources', i, 'dependsOn', j], `unknown resource "${d}"`);
      else deps.add(d);
    });
    if (r.values) checkValueTree(r.values, ['resources', i, 'values'], r.name, deps);
    if (r.vars) checkValueTree(r.vars, ['resources', i, 'vars'], r.name, deps);
    edges.set(r.name, deps);
  });
  for (const cycle of findCycles(edges, [...names.keys()])) {
    add(['resources', names.get(cycle[0]!)!, 'dependsOn'], `dependency cycle: ${[...cycle, cycle[0]].join(' -> ')}`);
  }

  // ------------------------------------------------------------ outputs
  const outputs: Record<string, BundleOutput> = {};
  if (isRecord(t.outputs)) {
    for (const [name, v] of Object.entries(t.outputs)) {
      if (!/^[-._a-zA-Z0-9]+$/.test(name)) add(['outputs', name], 'an output name matches [-._a-zA-Z0-9]+');
      const r = outputSchema.safeParse(v);
      if (!r.success) {
        addIssues(['outputs', name], r.error.issues);
        continue;
      }
      outputs[name] = r.data;
      checkValueTree(r.data.value, ['outputs', name, 'value'], undefined, undefined);
      const refKey = isRecord(r.data.value) && Object.keys(r.data.value).length === 1 ? Object.keys(r.data.value)[0] : undefined;
      const ref = refKey === 'outputRef' ? outputRefSchema.safeParse((r.data.value as Record<string, unknown>).outputRef) : undefined;
      const target = ref?.success ? ref.data : undefined;
      const tofuFacts = target && typeOf(target.step) === 'tofu' ? moduleFacts.get(target.step) : undefined;
      if (r.data.sensitive) {
        if (!target || typeOf(target.step) !== 'tofu') add(['outputs', name, 'sensitive'], 'a sensitive output is an outputRef to a tofu resource (only its outputs Secret keeps it in the cluster)');
      } else if (tofuFacts?.outputs.get(target!.key)?.sensitive) {
        add(['outputs', name], `output "${target!.key}" of "${target!.step}" is sensitive: mark this output sensitive`);
      }
      if (refKey === 'secretRef') add(['outputs', name, 'value'], 'an output cannot be a secretRef (secrets stay in the cluster)');
    }
  }

  if (problems.length > 0 || !top.success) return { problems };
  const bundle: Bundle = {
    name: top.data.name,
    version: top.data.version,
    ...(top.data.type ? { type: top.data.type } : {}),
    ...(top.data.description ? { description: top.data.description } : {}),
    ports,
    inputs,
    resources: resources as BundleResource[],
    outputs,
  };
  return { bundle, problems };
}

function checkChart(text: string, file: string, add: (path: PathSeg[], message: string, file?: string) => void) {
  let chart: unknown;
  try {
    chart = parseDocument(text, { prettyErrors: false }).toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    return add([], `invalid YAML: ${err instanceof Error ? err.message : String(err)}`, file);
  }
  if (!isRecord(chart)) return add([], 'Chart.yaml is not a mapping', file);
  for (const k of ['name', 'version']) if (typeof chart[k] !== 'string' || chart[k] === '') add([k], `Chart.yaml needs a ${k}`, file);
}

function checkManifestFile(text: string, file: string, add: (path: PathSeg[], message: string, file?: string) => void) {
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  if (!Array.isArray(docs)) return add([], 'not YAML documents', file);
  docs.forEach((d, i) => {
    if (d.errors.length) return add([`document ${i + 1}`], `invalid YAML: ${d.errors[0]!.message.split('\n')[0]}`, file);
    let v: unknown;
    try {
      v = d.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (err) {
      return add([`document ${i + 1}`], err instanceof Error ? err.message : String(err), file);
    }
    if (v === null || v === undefined) return;
    const meta = isRecord(v) ? v.metadata : undefined;
    if (!isRecord(v) || typeof v.apiVersion !== 'string' || typeof v.kind !== 'string' || !isRecord(meta) || typeof meta.name !== 'string') {
      add([`document ${i + 1}`], 'a manifest is a Kubernetes object with apiVersion, kind and metadata.name', file);
    }
  });
}

/** Each elementary cycle once (by its smallest rotation), in a stable order. */
export function findCycles(edges: Map<string, Set<string>>, order: string[]): string[][] {
  const found = new Map<string, string[]>();
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'visiting');
    stack.push(n);
    for (const d of edges.get(n) ?? []) {
      if (state.get(d) === 'visiting') {
        const cycle = stack.slice(stack.indexOf(d));
        const min = cycle.reduce((a, b) => (order.indexOf(a) <= order.indexOf(b) ? a : b));
        const rotated = [...cycle.slice(cycle.indexOf(min)), ...cycle.slice(0, cycle.indexOf(min))];
        found.set(rotated.join('\0'), rotated);
      } else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of order) if (!state.has(n)) visit(n);
  return [...found.values()];
}

function lineOf(doc: Document, lc: LineCounter, path: PathSeg[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lc.linePos(node.range[0]).line;
    if (n === 0) {
      const c = doc.contents as { range?: [number, number, number] } | null;
      return c?.range ? lc.linePos(c.range[0]).line : undefined;
    }
  }
  return undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------- checks with the real tools

/** The instance a bundle is rendered for at validation (no deployment exists yet). */
export const EXAMPLE_INSTANCE = { cluster: 'example', clusterDomain: 'example.invalid' } as const;
/** What a secretRef or outputRef stands for at validation (their values exist only in the cluster). */
export const PLACEHOLDER = 'placeholder';

/**
 * A helm resource's values or a tofu resource's vars as `bundles validate` renders them: inputs
 * at their defaults (a required input without one: a placeholder of its type), instance facts of
 * an example instance, secretRef and outputRef as {@link PLACEHOLDER}.
 */
export function exampleValues(bundle: Bundle, values: Record<string, unknown> | undefined): Record<string, unknown> {
  const inputs: Record<string, InputValue> = {};
  const defaults = resolveInputs(bundle, {}).values;
  for (const [name, def] of Object.entries(bundle.inputs)) {
    inputs[name] = defaults[name] ?? (def.type === 'number' ? 1 : def.type === 'boolean' ? true : PLACEHOLDER);
  }
  const osid = `${bundleType(bundle)}-xxxxx`;
  const c = { osid, cluster: EXAMPLE_INSTANCE.cluster, clusterDomain: EXAMPLE_INSTANCE.clusterDomain, git: { url: 'file:///example', commit: 'example', path: '.' } };
  const resolved = resolveStatic(values ?? {}, bundle, inputs, c);
  return mapRefs(resolved, () => PLACEHOLDER) as Record<string, unknown>;
}

/** `helm template` of a chart folder with a values file: renders and parses every template, talks to no cluster. */
export const helmTemplateArgs = (release: string, chartDir: string, valuesFile: string): string[] => [
  'template', release, chartDir, '--values', valuesFile, '--namespace', 'default',
];

/** `tofu init` without a backend (the module's own backend is ignored) and `tofu validate`. */
export const tofuInitArgs = (): string[] => ['init', '-backend=false', '-input=false', '-no-color'];
export const tofuValidateArgs = (): string[] => ['validate', '-json', '-no-color'];

/** `tofu init` output saying providers could not be installed (offline, no mirror, not mirrored). */
export function providersUnavailable(output: string): boolean {
  return /Failed to query available provider packages|Failed to install provider|Failed to resolve provider packages|could not connect to registry|was not found in any of the search locations/i.test(output);
}

interface TofuDiagnostic {
  severity?: string;
  summary?: string;
  detail?: string;
  range?: { filename?: string; start?: { line?: number } };
}

/** Errors of `tofu validate -json` as problems of the resource (file and line inside its source). */
export function tofuValidateProblems(stdout: string, source: string, at: string): Problem[] {
  let parsed: { valid?: boolean; diagnostics?: TofuDiagnostic[] };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    return [{ file: source, path: at, message: `tofu validate did not print JSON: ${stdout.trim().slice(0, 500)}` }];
  }
  const errors = (parsed.diagnostics ?? []).filter((d) => d.severity === 'error');
  if (parsed.valid === false && errors.length === 0) return [{ file: source, path: at, message: 'tofu validate: the module is invalid' }];
  return errors.map((d) => ({
    file: d.range?.filename ? posix.join(source, d.range.filename) : source,
    path: at,
    ...(d.range?.start?.line ? { line: d.range.start.line } : {}),
    message: `tofu validate: ${d.summary ?? 'error'}${d.detail ? `: ${d.detail}` : ''}`.slice(0, 2000),
  }));
}

/** The lines helm printed for a failed `helm template`, as a problem of the resource. */
export function helmTemplateProblem(stderr: string, source: string, at: string): Problem {
  const text = stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-8).join('\n');
  return { file: posix.join(source, 'templates'), path: at, message: `helm template: ${text || 'failed'}`.slice(0, 4000) };
}
