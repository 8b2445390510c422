/**
 * Pure decisions for instances: OSIDs, inputs (typed, defaulted, coerced from --set strings),
 * the bundle compiled to a flow (apply: namespace first, resources in stable topological order;
 * delete: the reverse, namespace last), and the instance's outputs read from a finished flow.
 */
import { posix } from 'node:path';
import { dnsLabel, type FlowSpec, type FlowStep, type StepAction } from '../../common/specs.ts';
import { randomAlnum } from '../../common/ids.ts';
import { bundleType, KNOWN_OUTPUTS, RESERVED_PREFIX, type Bundle, type BundleResource, type ValueRefName } from './bundle.schema.ts';
import { mapRefs, type RefKey } from './refs.ts';

export const NAMESPACE_STEP = `${RESERVED_PREFIX}namespace`;
export const OSID_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[a-z0-9]{5}$/;

export function newOsid(type: string, random: (n: number) => string = randomAlnum): string {
  const osid = `${type}-${random(5)}`;
  if (!dnsLabel().safeParse(osid).success) throw new Error(`"${osid}" is not a DNS label`);
  return osid;
}

export interface InstanceContext {
  osid: string;
  cluster: string;
  clusterDomain: string;
  /** The pinned source: every git reference of the flow uses this commit. */
  git: { url: string; commit: string; path: string };
}

export const namespaceOf = (osid: string) => osid;
export const hostOf = (c: Pick<InstanceContext, 'osid' | 'clusterDomain'>) => `${c.osid}.${c.clusterDomain}`;
export const portHostOf = (c: Pick<InstanceContext, 'osid' | 'clusterDomain'>, port: number) => `${c.osid}-${port}.${c.clusterDomain}`;

export type InputValue = string | number | boolean | null;

/**
 * The inputs of a deployment: defaults, overridden by `previous` (an upgrade keeps earlier
 * values), overridden by `given`. Strings are coerced to the input's type (`--set n=3`). Every
 * problem is reported.
 */
export function resolveInputs(
  bundle: Pick<Bundle, 'inputs'>,
  given: Record<string, unknown>,
  previous: Record<string, unknown> = {},
): { values: Record<string, InputValue>; problems: string[] } {
  const values: Record<string, InputValue> = {};
  const problems: string[] = [];
  for (const k of Object.keys(given)) if (!Object.hasOwn(bundle.inputs, k)) problems.push(`unknown input "${k}" (inputs: ${Object.keys(bundle.inputs).join(', ') || 'none'})`);
  for (const [name, def] of Object.entries(bundle.inputs)) {
    const raw = Object.hasOwn(given, name) ? given[name] : Object.hasOwn(previous, name) ? previous[name] : def.default;
    if (raw === undefined || raw === null) {
      if (def.required) problems.push(`input "${name}" is required${def.description ? ` (${def.description})` : ''}`);
      values[name] = null;
      continue;
    }
    const v = coerce(raw, def.type);
    if (v === undefined) problems.push(`input "${name}" must be a ${def.type} (got ${JSON.stringify(raw)})`);
    else values[name] = v;
  }
  return { values, problems };
}

function coerce(raw: unknown, type: 'string' | 'number' | 'boolean'): InputValue | undefined {
  if (typeof raw === type) return raw as InputValue;
  if (typeof raw !== 'string') return type === 'string' && (typeof raw === 'number' || typeof raw === 'boolean') ? String(raw) : undefined;
  if (type === 'number') {
    const n = Number(raw);
    return raw.trim() !== '' && Number.isFinite(n) ? n : undefined;
  }
  if (type === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : undefined;
  return raw;
}

/** Resources in dependency order (dependsOn and outputRefs); ties keep declaration order. */
export function topologicalOrder(resources: readonly BundleResource[]): BundleResource[] {
  const deps = new Map(resources.map((r) => [r.name, dependenciesOf(r)]));
  const done = new Set<string>();
  const out: BundleResource[] = [];
  while (out.length < resources.length) {
    const next = resources.find((r) => !done.has(r.name) && [...deps.get(r.name)!].every((d) => done.has(d) || !deps.has(d)));
    if (!next) throw new Error('dependency cycle'); // validation refuses cycles before this runs
    done.add(next.name);
    out.push(next);
  }
  return out;
}

export function dependenciesOf(r: BundleResource): Set<string> {
  const deps = new Set(r.dependsOn ?? []);
  const collect = (v: unknown) =>
    mapRefs(v, (key, payload) => {
      if (key === 'outputRef') deps.add((payload as { step: string }).step);
      return undefined;
    });
  if (r.values) collect(r.values);
  if (r.vars) collect(r.vars);
  deps.delete(r.name);
  return deps;
}

/** The value of a {valueRef}. */
export function valueOf(name: ValueRefName, bundle: Pick<Bundle, 'name' | 'version'>, c: InstanceContext): string {
  switch (name) {
    case 'osid':
      return c.osid;
    case 'namespace':
      return namespaceOf(c.osid);
    case 'host':
      return hostOf(c);
    case 'clusterDomain':
      return c.clusterDomain;
    case 'cluster':
      return c.cluster;
    case 'bundle':
      return bundle.name;
    case 'version':
      return bundle.version;
  }
}

/** Resolves the control plane's references (inputs, instance facts); secretRef and outputRef stay. */
export function resolveStatic(value: unknown, bundle: Bundle, inputs: Record<string, InputValue>, c: InstanceContext): unknown {
  return mapRefs(value, (key: RefKey, payload) => {
    if (key === 'inputRef') return inputs[payload as string] ?? null;
    if (key === 'valueRef') return valueOf(payload as ValueRefName, bundle, c);
    if (key === 'hostRef') return portHostOf(c, (payload as { port: number }).port);
    return undefined;
  });
}

const sourceOf = (c: InstanceContext, source: string) => ({
  git: { url: c.git.url, ref: c.git.commit, path: posix.normalize(posix.join(c.git.path, source)).replace(/\/+$/, '') || '.' },
});

export function namespaceManifest(bundle: Pick<Bundle, 'name' | 'version'>, c: InstanceContext): string {
  const ns = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: namespaceOf(c.osid),
      labels: { 'app.kubernetes.io/managed-by': 'tether', 'tether.dev/instance': c.osid, 'tether.dev/bundle': bundle.name },
      annotations: { 'tether.dev/bundle-version': bundle.version, 'tether.dev/commit': c.git.commit },
    },
  };
  return `${JSON.stringify(ns)}\n`;
}

/** The flow that applies (installs or upgrades) or deletes an instance. */
export function compileBundle(bundle: Bundle, inputs: Record<string, InputValue>, c: InstanceContext, action: StepAction = 'apply'): FlowSpec {
  const namespace = namespaceOf(c.osid);
  const ordered = topologicalOrder(bundle.resources);
  const byName = new Map(bundle.resources.map((r) => [r.name, r]));
  const nsStep: FlowStep = {
    name: NAMESPACE_STEP,
    type: 'manifest',
    spec: { manifests: namespaceManifest(bundle, c), ...(action === 'delete' ? { action } : {}) },
  };
  const stepOf = (r: BundleResource): FlowStep => {
    const act = action === 'delete' ? { action } : {};
    switch (r.type) {
      case 'helm': {
        const values = action === 'apply' && r.values ? (resolveStatic(r.values, bundle, inputs, c) as Record<string, unknown>) : undefined;
        return { name: r.name, type: 'helm', spec: { ...act, release: r.name, namespace, chart: sourceOf(c, r.source), ...(values ? { values } : {}) } };
      }
      case 'manifest':
        return { name: r.name, type: 'manifest', spec: { ...act, source: sourceOf(c, r.source), namespace } };
      case 'tofu': {
        let vars = r.vars ? (resolveStatic(r.vars, bundle, inputs, c) as Record<string, unknown>) : undefined;
        // tofu destroy still needs the variables, but the resources it used run after it: an
        // output of a tofu resource is read from its outputs Secret (still there), other outputs
        // are known names or null.
        if (vars && action === 'delete') vars = mapRefs(vars, (key, payload) => (key === 'outputRef' ? deletedOutput(payload as { step: string; key: string }, byName, namespace) : undefined)) as Record<string, unknown>;
        return { name: r.name, type: 'tofu', spec: { ...act, source: sourceOf(c, r.source), stateName: r.name, namespace, ...(vars ? { vars } : {}) } };
      }
    }
  };
  const steps = ordered.map(stepOf);
  return { steps: action === 'delete' ? [...steps.reverse(), nsStep] : [nsStep, ...steps] };
}

/**
 * The flow that checks an instance for drift, changing nothing: one `diff` step per step of the
 * apply flow (the namespace first, then the resources in the same order), each with the spec the
 * apply would use without `action`. A diff step has no apply outputs, so an outputRef is resolved
 * from what the last apply produced: a tofu resource's output from its outputs Secret (read in the
 * agent, as the apply wrote it), a helm or manifest output from the last succeeded apply flow's
 * step outputs (`applyOutputs`), null when there is none (the diff then shows that value).
 */
export function compileDiff(bundle: Bundle, inputs: Record<string, InputValue>, c: InstanceContext, applyOutputs: unknown): FlowSpec {
  const namespace = namespaceOf(c.osid);
  const byName = new Map(bundle.resources.map((r) => [r.name, r]));
  const applied = new Map<string, Record<string, unknown>>();
  const list = (applyOutputs as { steps?: unknown } | null)?.steps;
  if (Array.isArray(list)) for (const st of list as StepReport[]) if (st && typeof st.name === 'string' && st.outputs) applied.set(st.name, st.outputs);
  const resolve = (v: Record<string, unknown>) =>
    mapRefs(v, (key, payload) => {
      if (key !== 'outputRef') return undefined;
      const ref = payload as { step: string; key: string };
      if (byName.get(ref.step)?.type === 'tofu') return deletedOutput(ref, byName, namespace);
      const out = applied.get(ref.step);
      return out && Object.hasOwn(out, ref.key) ? out[ref.key] : deletedOutput(ref, byName, namespace);
    }) as Record<string, unknown>;
  const steps = compileBundle(bundle, inputs, c, 'apply').steps.map((st): FlowStep => {
    switch (st.type) {
      case 'helm': {
        const { action: _a, values, ...spec } = st.spec;
        return { name: st.name, type: 'diff', spec: { target: 'helm', spec: { ...spec, ...(values ? { values: resolve(values) } : {}) } } };
      }
      case 'manifest': {
        const { action: _a, ...spec } = st.spec;
        return { name: st.name, type: 'diff', spec: { target: 'manifest', spec } };
      }
      case 'tofu': {
        const { action: _a, vars, ...spec } = st.spec;
        return { name: st.name, type: 'diff', spec: { target: 'tofu', spec: { ...spec, ...(vars ? { vars: resolve(vars) } : {}) } } };
      }
      default:
        throw new Error(`an apply flow has no ${st.type} step`);
    }
  });
  return { steps };
}

/** An instance's sync status from its ended diff flow: drifted when any step found drift or something missing. */
export function syncStatusOf(job: { state: string; outputs: unknown }): 'synced' | 'drifted' | 'error' {
  if (job.state !== 'succeeded') return 'error';
  const list = (job.outputs as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(list)) return 'error';
  let drifted = false;
  for (const st of list as StepReport[]) {
    const sum = (st?.outputs as { summary?: { drifted?: number; missing?: number; error?: number } } | undefined)?.summary;
    if (st?.state !== 'succeeded' || !sum) return 'error';
    if ((sum.error ?? 0) > 0) return 'error';
    if ((sum.drifted ?? 0) + (sum.missing ?? 0) > 0) drifted = true;
  }
  return drifted ? 'drifted' : 'synced';
}

function deletedOutput(ref: { step: string; key: string }, byName: Map<string, BundleResource>, namespace: string): unknown {
  const target = byName.get(ref.step);
  if (target?.type === 'tofu') return { secretRef: { name: `${target.name}-outputs`, key: ref.key, namespace } };
  if (target?.type === 'helm' && ref.key === 'release') return target.name;
  if (ref.key === 'namespace') return namespace;
  return null;
}

// ------------------------------------------------------------------ outputs

export interface SensitiveOutput {
  /** Where the value is: a key of a Secret in the instance's namespace. */
  secret: { namespace: string; name: string; key: string };
  description?: string;
}

export interface InstanceOutputs {
  outputs: Record<string, unknown>;
  sensitiveOutputs: Record<string, SensitiveOutput>;
  /** Outputs that a step did not report (named, so they are not silently missing). */
  missing: string[];
}

interface StepReport {
  name: string;
  type: string;
  state: string;
  outputs?: Record<string, unknown>;
}

/** The instance's outputs from a succeeded apply flow's outputs (`{steps: [...]}`). */
export function instanceOutputs(bundle: Bundle, inputs: Record<string, InputValue>, c: InstanceContext, flowOutputs: unknown): InstanceOutputs {
  const steps = new Map<string, StepReport>();
  const list = (flowOutputs as { steps?: unknown } | null)?.steps;
  if (Array.isArray(list)) for (const s of list as StepReport[]) if (s && typeof s.name === 'string') steps.set(s.name, s);
  const namespace = namespaceOf(c.osid);
  const result: InstanceOutputs = { outputs: {}, sensitiveOutputs: {}, missing: [] };
  for (const [name, def] of Object.entries(bundle.outputs)) {
    const v = def.value as Record<string, unknown>;
    const ref = typeof v === 'object' && v !== null && Object.keys(v).length === 1 && 'outputRef' in v ? (v.outputRef as { step: string; key: string }) : undefined;
    if (!ref) {
      result.outputs[name] = resolveStatic(def.value, bundle, inputs, c);
      continue;
    }
    const step = steps.get(ref.step);
    const resource = bundle.resources.find((r) => r.name === ref.step);
    if (resource?.type === 'tofu') {
      const o = (step?.outputs ?? {}) as { outputs?: Record<string, unknown>; sensitiveOutputs?: string[]; outputsSecret?: string };
      const secret = { namespace, name: o.outputsSecret ?? `${ref.step}-outputs`, key: ref.key };
      if (def.sensitive || o.sensitiveOutputs?.includes(ref.key)) result.sensitiveOutputs[name] = { secret, ...(def.description ? { description: def.description } : {}) };
      else if (o.outputs && Object.hasOwn(o.outputs, ref.key)) result.outputs[name] = o.outputs[ref.key];
      else result.missing.push(name);
    } else if (step?.outputs && Object.hasOwn(step.outputs, ref.key) && (!resource || (KNOWN_OUTPUTS[resource.type] as readonly string[]).includes(ref.key))) {
      result.outputs[name] = step.outputs[ref.key];
    } else result.missing.push(name);
  }
  return result;
}

export { bundleType };
