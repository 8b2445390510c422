/**
 * The bundle.yaml format (zod). Parsed in pieces so that validation can report every problem at
 * once: the top level first, then each input, resource and output on its own.
 *
 * References inside `values`, `vars` and output `value`s are single-key objects:
 *   {inputRef: <input>}                     the input's value, resolved by the control plane
 *   {valueRef: osid|namespace|host|clusterDomain|cluster|bundle|version}
 *                                           a fact of the instance, resolved by the control plane
 *   {hostRef: {port: <declared port>}}      "<osid>-<port>.<clusterDomain>"
 *   {secretRef: {name, key, namespace?}}    left for the cluster agent (common/specs.ts)
 *   {outputRef: {step: <resource>, key}}    another resource's output, resolved by the agent
 */
import { z } from 'zod';
import { dnsLabel } from '../../common/specs.ts';

export const BUNDLE_FILE = 'bundle.yaml';
export const RESOURCE_TYPES = ['helm', 'manifest', 'tofu'] as const;
export const INPUT_TYPES = ['string', 'number', 'boolean'] as const;
export const VALUE_REFS = ['osid', 'namespace', 'host', 'clusterDomain', 'cluster', 'bundle', 'version'] as const;
export type ValueRefName = (typeof VALUE_REFS)[number];
export type InputType = (typeof INPUT_TYPES)[number];
export type ResourceType = (typeof RESOURCE_TYPES)[number];

/** Steps the compiler adds itself are named with this prefix; resources may not use it. */
export const RESERVED_PREFIX = 'tether-';
/** An OSID is `<type>-<5 alphanumerics>`; the type is kept short enough for `<osid>-<port>` host labels. */
export const MAX_TYPE_LENGTH = 40;
export const MAX_RESOURCES = 40;

export const inputNameRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const topLevelSchema = z
  .object({
    apiVersion: z.literal('tether.dev/v1').optional(),
    name: dnsLabel(),
    version: z.string().min(1).max(64).regex(/^[0-9A-Za-z][0-9A-Za-z.+_-]*$/, 'must be a version like 1.2.0'),
    type: dnsLabel(MAX_TYPE_LENGTH).optional(),
    description: z.string().max(4096).optional(),
    ports: z.array(z.number().int().min(1).max(65535)).max(20).optional(),
    inputs: z.record(z.string(), z.unknown()).optional(),
    resources: z.array(z.unknown()).min(1, 'a bundle has at least one resource').max(MAX_RESOURCES),
    outputs: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export const inputSchema = z
  .object({
    type: z.enum(INPUT_TYPES),
    description: z.string().max(4096).optional(),
    required: z.boolean().optional(),
    default: z.union([z.string().max(64 * 1024), z.number().finite(), z.boolean()]).optional(),
  })
  .strict()
  .superRefine((i, ctx) => {
    if (i.default !== undefined && typeof i.default !== i.type) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: `default ${JSON.stringify(i.default)} is not a ${i.type}` });
    }
    if (i.required && i.default !== undefined) ctx.addIssue({ code: 'custom', path: ['required'], message: 'a required input has no default' });
  });

const valuesRecord = z.record(z.string().max(253), z.unknown());

export const resourceSchema = z
  .object({
    name: dnsLabel(53).refine((n) => !n.startsWith(RESERVED_PREFIX), `must not start with "${RESERVED_PREFIX}" (reserved)`),
    type: z.enum(RESOURCE_TYPES),
    source: z.string().min(1).max(1024),
    description: z.string().max(4096).optional(),
    dependsOn: z.array(z.string()).max(MAX_RESOURCES).optional(),
    values: valuesRecord.optional(),
    vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'must be a variable name').max(128), z.unknown()).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.values !== undefined && r.type !== 'helm') ctx.addIssue({ code: 'custom', path: ['values'], message: `values are for helm resources (use vars for tofu; manifests take none)` });
    if (r.vars !== undefined && r.type !== 'tofu') ctx.addIssue({ code: 'custom', path: ['vars'], message: `vars are for tofu resources (use values for helm; manifests take none)` });
  });

export const outputSchema = z
  .object({
    value: z.unknown().refine((v) => v !== undefined, 'an output needs a value'),
    sensitive: z.boolean().optional(),
    description: z.string().max(4096).optional(),
  })
  .strict();

export type BundleInput = z.infer<typeof inputSchema>;
export type BundleResource = z.infer<typeof resourceSchema>;
export type BundleOutput = z.infer<typeof outputSchema>;

/** A bundle that passed validation. */
export interface Bundle {
  name: string;
  version: string;
  type?: string;
  description?: string;
  ports: number[];
  inputs: Record<string, BundleInput>;
  resources: BundleResource[];
  outputs: Record<string, BundleOutput>;
}

/** The OSID type of a bundle: its declared short type, else its name. */
export function bundleType(b: Pick<Bundle, 'name' | 'type'>): string {
  return b.type ?? b.name;
}

/** Outputs every resource type reports to the control plane (tofu: the module's own outputs). */
export const KNOWN_OUTPUTS: Record<Exclude<ResourceType, 'tofu'>, readonly string[]> = {
  helm: ['release', 'namespace', 'revision', 'status', 'chart', 'chartVersion', 'appVersion'],
  manifest: ['applied'],
};
