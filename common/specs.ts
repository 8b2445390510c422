/**
 * Command specs: what a user submits and what an agent executes. Validated by the control plane
 * at submission and again by the agent before it acts (the agent never trusts the wire).
 *
 * References are structured values, never string templates:
 *   {secretRef: {name, key, namespace?}}  a value read from a Kubernetes Secret by the agent;
 *   {outputRef: {step, key}}              an earlier flow step's output.
 *
 * helm, manifest and tofu specs take `action: apply | delete` (default apply): delete is helm
 * uninstall, deleting the manifest's objects, tofu destroy with the same state.
 */
import { z } from 'zod';

import { COMMAND_TYPES, type CommandType } from './command-types.ts';
import { installSpecSchema, preflightSpecSchema, vpnSyncSpecSchema } from './node-specs.ts';

// The type names and the node agent's specs live in zod-free and zod/mini modules (the node agent
// loads those, never this one); the same names are exported from here.
export {
  CLUSTER_COMMAND_TYPES,
  COMMAND_TYPES,
  NODE_COMMAND_TYPES,
  isNodeCommandType,
  type ClusterCommandType,
  type CommandType,
  type NodeCommandType,
} from './command-types.ts';
export { installSpecSchema, preflightSpecSchema, vpnSyncSpecSchema, type InstallSpec } from './node-specs.ts';

/** Largest nesting and size we accept inside values/vars: enough for real charts, bounded for hostile input. */
const MAX_VALUE_DEPTH = 32;
/**
 * Any string of a spec (the request body limit, 2 MiB, bounds it first). Field limits are
 * tighter and say so in their own words: inline manifests ({@link MAX_MANIFEST_BYTES}).
 */
const MAX_STRING = 2 * 1024 * 1024;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** A DNS-1123 label (namespaces, release names, secret names use it or its subdomain form). */
export const dnsLabel = (max = 63) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be lowercase alphanumerics and "-", starting and ending alphanumeric');

export const dnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS-1123 subdomain');

/** A Secret data key: [-._a-zA-Z0-9]+ as Kubernetes requires. */
export const secretKey = z.string().min(1).max(253).regex(/^[-._a-zA-Z0-9]+$/, 'must match [-._a-zA-Z0-9]+');

export const secretRefSchema = z
  .object({ name: dnsSubdomain, key: secretKey, namespace: dnsLabel().optional() })
  .strict();
export const outputRefSchema = z.object({ step: dnsLabel(), key: z.string().min(1).max(253) }).strict();
export type SecretRef = z.infer<typeof secretRefSchema>;
export type OutputRef = z.infer<typeof outputRefSchema>;

/** A path inside a repository: relative, no `..` segment, no NUL, no leading `-`. */
export const repoPath = z
  .string()
  .max(1024)
  .refine((p) => !p.startsWith('/') && !p.includes('\0') && !p.startsWith('-'), 'must be a relative path')
  .refine((p) => !p.split(/[\\/]+/).includes('..'), 'must not contain ".." segments')
  .transform((p) => (p === '' ? '.' : p));

/** A git ref (branch, tag or commit): refname-safe characters, never an option. */
export const gitRef = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9._/][A-Za-z0-9._/+-]*$/, 'must be a branch, tag or commit name')
  .refine((r) => !r.includes('..'), 'must not contain ".."');

/** A git URL a clone may use: file://, https://, http://, ssh:// or scp-like git@host:path. */
export const gitUrl = z
  .string()
  .min(1)
  .max(2048)
  .refine((u) => /^(file|https?|ssh):\/\/[^\s]+$/.test(u) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s-][^\s]*$/.test(u), 'must be a file://, https://, http://, ssh:// or user@host:path git URL');

export const gitSourceSchema = z.object({ url: gitUrl, ref: gitRef, path: repoPath.default('.') }).strict();
export type GitSource = z.infer<typeof gitSourceSchema>;

/**
 * Any JSON value, refusing prototype-polluting keys and unbounded nesting. Secret and output
 * references are just objects of a known shape within it; {@link findRefs} finds them.
 */
export const jsonValue: z.ZodType<unknown> = z.unknown().superRefine((value, ctx) => {
  const problem = checkJsonValue(value, 0);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

function checkJsonValue(value: unknown, depth: number): string | undefined {
  if (depth > MAX_VALUE_DEPTH) return `nested deeper than ${MAX_VALUE_DEPTH} levels`;
  if (value === null || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'numbers must be finite';
  if (typeof value === 'string') return value.length > MAX_STRING ? `string longer than ${MAX_STRING} characters` : undefined;
  if (Array.isArray(value)) {
    for (const item of value) {
      const p = checkJsonValue(item, depth + 1);
      if (p) return p;
    }
    return undefined;
  }
  if (typeof value === 'object') {
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) return `key "${key}" is not allowed`;
      const p = checkJsonValue((value as Record<string, unknown>)[key], depth + 1);
      if (p) return p;
    }
    if (Object.getOwnPropertyNames(value).includes('__proto__')) return 'key "__proto__" is not allowed';
    return undefined;
  }
  return `unsupported value of type ${typeof value}`;
}

const valuesObject = z.record(z.string().max(253), jsonValue).superRefine((v, ctx) => {
  if (Object.getOwnPropertyNames(v).includes('__proto__')) ctx.addIssue({ code: 'custom', message: 'key "__proto__" is not allowed' });
  const problem = checkRefs(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const helmChartSchema = z.union([
  z.object({ repo: z.string().url().max(2048), name: z.string().min(1).max(253).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a chart name'), version: z.string().min(1).max(128).regex(/^[^\s-][^\s]*$/).optional() }).strict(),
  z.object({ oci: z.string().max(2048).regex(/^oci:\/\/[^\s]+$/, 'must start with oci://'), version: z.string().min(1).max(128).regex(/^[^\s-][^\s]*$/).optional() }).strict(),
  z.object({ git: gitSourceSchema }).strict(),
]);

/** What a helm, manifest or tofu spec does; absent means apply. */
export const STEP_ACTIONS = ['apply', 'delete'] as const;
export type StepAction = (typeof STEP_ACTIONS)[number];
const stepAction = z.enum(STEP_ACTIONS).optional();

export const helmSpecSchema = z
  .object({
    action: stepAction,
    release: dnsLabel(53),
    namespace: dnsLabel(),
    chart: helmChartSchema,
    values: valuesObject.optional(),
    createNamespace: z.boolean().optional(),
    wait: z.boolean().optional(),
    timeoutSeconds: z.number().int().min(1).max(3600).optional(),
  })
  .strict();

/** Inline manifests (`manifests`), in UTF-8 bytes: 1 MiB (cert-manager's CRDs fit; the body limit is 2 MiB). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** The files of a manifest `source` folder together: larger sets go through git. */
export const MAX_SOURCE_MANIFEST_BYTES = 32 * 1024 * 1024;
/** The files of a manifest `source` folder that are read (by name order, not recursive). */
export function isManifestFileName(name: string): boolean {
  return /\.(ya?ml|json)$/i.test(name) && !name.startsWith('.');
}

/** At most this many earlier objects in a manifest spec's `prune`. */
export const MAX_PRUNE_REFS = 2000;
/** An object by identity, as a manifest apply reports it in `applied`. */
export const appliedRefSchema = z
  .object({
    apiVersion: z.string().min(1).max(317).regex(/^([a-z0-9.-]+\/)?v[0-9a-z]+$/, 'must be an apiVersion'),
    kind: z.string().min(1).max(63).regex(/^[A-Za-z][A-Za-z0-9]*$/, 'must be a kind'),
    namespace: dnsLabel().optional(),
    name: z.string().min(1).max(253).regex(/^[a-z0-9A-Z:]([-a-z0-9A-Z.:_]*[a-z0-9A-Z])?$/, 'must be an object name'),
  })
  .strict();

export type AppliedRefSpec = z.infer<typeof appliedRefSchema>;

/** Where a manifest spec's objects come from: inline YAML or a git folder (exactly one), and the default namespace. */
const manifestSourceFields = {
  manifests: z
    .string()
    .min(1)
    .superRefine((m, ctx) => {
      const bytes = Buffer.byteLength(m, 'utf8'); // the string is bounded by the request body limit
      if (bytes <= MAX_MANIFEST_BYTES) return;
      ctx.addIssue({
        code: 'custom',
        message:
          `inline manifests are limited to 1 MiB (${MAX_MANIFEST_BYTES} bytes, these are ${bytes}): ` +
          'put larger sets in a git repository and use source: {git: {url, ref, path}} instead of manifests',
      });
    })
    .optional(),
  source: z.object({ git: gitSourceSchema }).strict().optional(),
  namespace: dnsLabel().optional(),
  /**
   * Objects an earlier apply of this manifest resource applied (its `applied` output): after the
   * apply, those the manifests no longer list are deleted if Tether's field manager still manages
   * them (pruning); a diff reports them as `prune`. Ignored by `action: delete`.
   */
  prune: z.array(appliedRefSchema).max(MAX_PRUNE_REFS).optional(),
};
const exactlyOneSource = (m: { manifests?: string | undefined; source?: unknown }, ctx: z.RefinementCtx) => {
  if ((m.manifests === undefined) === (m.source === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of manifests and source' });
};

/** Inline YAML (`manifests`) or the YAML files of a folder in a git repository (`source`): exactly one. */
export const manifestSpecSchema = z
  .object({ action: stepAction, ...manifestSourceFields })
  .strict()
  .superRefine(exactlyOneSource);

/** The objects a manifest diff compares: a manifest spec without `action`. */
export const manifestDiffTargetSchema = z.object(manifestSourceFields).strict().superRefine(exactlyOneSource);

export const tofuSpecSchema = z
  .object({
    action: stepAction,
    source: z.object({ git: gitSourceSchema }).strict(),
    vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'must be a variable name').max(128), jsonValue).superRefine((v, ctx) => {
      const problem = checkRefs(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }).optional(),
    stateName: dnsLabel(53),
    namespace: dnsLabel().optional(),
  })
  .strict();

/** The release a helm diff renders and compares: a helm spec without `action`. */
export const helmDiffTargetSchema = helmSpecSchema.omit({ action: true }).strict();

/** The state a tofu diff plans against: a tofu spec without `action`. */
export const tofuDiffTargetSchema = tofuSpecSchema.omit({ action: true }).strict();

/**
 * A `diff` command: what a `target` of a kind would change, changing nothing:
 * `target: 'manifest'`, `'helm'` or `'tofu'`, each with the spec of that command type without
 * `action`.
 */
export const diffSpecSchema = z.discriminatedUnion('target', [
  z.object({ target: z.literal('manifest'), spec: manifestDiffTargetSchema }).strict(),
  z.object({ target: z.literal('helm'), spec: helmDiffTargetSchema }).strict(),
  z.object({ target: z.literal('tofu'), spec: tofuDiffTargetSchema }).strict(),
]);

export const flowStepSchema = z.discriminatedUnion('type', [
  z.object({ name: dnsLabel(), type: z.literal('helm'), spec: helmSpecSchema }).strict(),
  z.object({ name: dnsLabel(), type: z.literal('manifest'), spec: manifestSpecSchema }).strict(),
  z.object({ name: dnsLabel(), type: z.literal('tofu'), spec: tofuSpecSchema }).strict(),
  // A diff step changes nothing; its outputs are the diff's result (a drifted step is not a failure).
  z.object({ name: dnsLabel(), type: z.literal('diff'), spec: diffSpecSchema }).strict(),
]);

export const flowSpecSchema = z
  .object({ steps: z.array(flowStepSchema).min(1).max(50) })
  .strict()
  .superRefine((flow, ctx) => {
    const seen = new Set<string>();
    flow.steps.forEach((step, i) => {
      if (seen.has(step.name)) ctx.addIssue({ code: 'custom', path: ['steps', i, 'name'], message: `duplicate step name "${step.name}"` });
      for (const ref of findRefs(step.spec).outputs) {
        if (!seen.has(ref.step)) {
          ctx.addIssue({ code: 'custom', path: ['steps', i, 'spec'], message: `outputRef to step "${ref.step}" which does not run before "${step.name}"` });
        }
      }
      seen.add(step.name);
    });
  });


export type HelmSpec = z.infer<typeof helmSpecSchema>;
export type ManifestSpec = z.infer<typeof manifestSpecSchema>;
export type TofuSpec = z.infer<typeof tofuSpecSchema>;
export type FlowSpec = z.infer<typeof flowSpecSchema>;
export type FlowStep = z.infer<typeof flowStepSchema>;
export type DiffSpec = z.infer<typeof diffSpecSchema>;
export type ManifestDiffTarget = z.infer<typeof manifestDiffTargetSchema>;
export type HelmDiffTarget = z.infer<typeof helmDiffTargetSchema>;
export type TofuDiffTarget = z.infer<typeof tofuDiffTargetSchema>;

export const specSchemas = {
  helm: helmSpecSchema,
  manifest: manifestSpecSchema,
  tofu: tofuSpecSchema,
  flow: flowSpecSchema,
  diff: diffSpecSchema,
  preflight: preflightSpecSchema,
  install: installSpecSchema,
  'vpn-sync': vpnSyncSpecSchema,
} as const satisfies Record<CommandType, z.core.$ZodType>;

/** Validates a spec for its type; the result is the parsed (defaulted) spec. */
export function parseSpec(type: CommandType, spec: unknown): z.ZodSafeParseResult<unknown> {
  return z.safeParse(specSchemas[type] as z.core.$ZodType, spec);
}

export function isSecretRef(v: unknown): v is { secretRef: SecretRef } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'secretRef' in v;
}
export function isOutputRef(v: unknown): v is { outputRef: OutputRef } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'outputRef' in v;
}

/** Every secret and output reference inside a value, in document order. */
export function findRefs(value: unknown): { secrets: SecretRef[]; outputs: OutputRef[] } {
  const secrets: SecretRef[] = [];
  const outputs: OutputRef[] = [];
  const walk = (v: unknown): void => {
    if (isSecretRef(v)) {
      const parsed = secretRefSchema.safeParse(v.secretRef);
      if (parsed.success) secrets.push(parsed.data);
      return;
    }
    if (isOutputRef(v)) {
      const parsed = outputRefSchema.safeParse(v.outputRef);
      if (parsed.success) outputs.push(parsed.data);
      return;
    }
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
  };
  walk(value);
  return { secrets, outputs };
}

/** A reference-shaped object that is not a valid reference is an error, not a literal value. */
function checkRefs(value: unknown): string | undefined {
  if (isSecretRef(value)) {
    const r = secretRefSchema.safeParse(value.secretRef);
    return r.success ? undefined : `invalid secretRef: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ')}`;
  }
  if (isOutputRef(value)) {
    const r = outputRefSchema.safeParse(value.outputRef);
    return r.success ? undefined : `invalid outputRef: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ')}`;
  }
  if (Array.isArray(value)) {
    for (const v of value) {
      const p = checkRefs(v);
      if (p) return p;
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) {
      const p = checkRefs(v);
      if (p) return p;
    }
  }
  return undefined;
}
