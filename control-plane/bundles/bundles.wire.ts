/** Request bodies and views of the bundle and instance API (control plane and its CLI). */
import { z } from 'zod';
import { dnsLabel, gitRef, gitUrl, repoPath } from '../../common/specs.ts';
import { cidSchema } from '../../common/wire.ts';
import type { CommandState, CommandError } from '../../common/wire.ts';
import type { Problem } from './validate.ts';

export const registerBundleSchema = z
  .object({
    name: dnsLabel(),
    url: gitUrl.refine((u) => !/^(https?|file):\/\/[^/?#]*@/i.test(u), 'must not hold credentials: give username and password instead'),
    ref: gitRef,
    path: repoPath.default('.'),
    /** The source's own https credentials (a password or token), used only to fetch it. */
    username: z.string().min(1).max(256).regex(/^[^:\s]+$/, 'must not contain ":" or blanks').optional(),
    password: z.string().min(1).max(4096).regex(/^[^\r\n]+$/, 'must be one line').optional(),
  })
  .strict()
  .refine((b) => (b.username === undefined) === (b.password === undefined), { message: 'username and password go together', path: ['password'] });
export type RegisterBundleRequest = z.infer<typeof registerBundleSchema>;

const inputValues = z.record(z.string().max(128), z.union([z.string().max(64 * 1024), z.number().finite(), z.boolean()])).default({});

export const deploySchema = z
  .object({
    bundle: dnsLabel(),
    cluster: cidSchema,
    inputs: inputValues,
    timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  })
  .strict();
export type DeployRequest = z.infer<typeof deploySchema>;

/** A version number of an instance's desired state (1, 2, …). */
export const versionNumber = z.number().int().min(1).max(2_147_483_647);

/**
 * An upgrade (the source's ref pinned again, inputs changed) or, with `version`, a rollback: that
 * version's commit and inputs deployed again as a new version; inputs cannot be changed then.
 */
export const redeploySchema = z
  .object({ inputs: inputValues, version: versionNumber.optional(), timeoutSeconds: z.number().int().min(1).max(86_400).optional() })
  .strict()
  .refine((b) => b.version === undefined || Object.keys(b.inputs).length === 0, { message: 'a rollback to a version deploys its inputs: give no inputs with version', path: ['inputs'] });
export type RedeployRequest = z.infer<typeof redeploySchema>;

/**
 * PATCH /v1/instances/{osid}: the instance's scheduled drift checks (an interval of 60 s to one
 * day, or off) and autoSync (a check that finds drift submits a sync). At least one of them.
 */
export const driftSettingsSchema = z
  .object({
    driftCheck: z.union([z.literal('off'), z.object({ intervalSeconds: z.number().int().min(60).max(86_400) }).strict()]).optional(),
    autoSync: z.boolean().optional(),
  })
  .strict()
  .refine((b) => b.driftCheck !== undefined || b.autoSync !== undefined, { message: 'give driftCheck, autoSync or both' });
export type DriftSettingsRequest = z.infer<typeof driftSettingsSchema>;

/**
 * A desired state given to `POST /v1/instances/{osid}/diff` and `/sync` (`tether diff|sync --file`):
 * a commit of the instance's registered source (a full SHA; fetched from it) and/or its inputs
 * (all of them: one not given takes its default). Absent: the latest version's.
 */
export const desiredStateSchema = z
  .object({
    commit: z.string().regex(/^[0-9a-f]{40}$/, 'must be a full commit SHA (40 lowercase hex digits)').optional(),
    inputs: z.record(z.string().max(128), z.union([z.string().max(64 * 1024), z.number().finite(), z.boolean()])).refine((o) => Object.keys(o).length <= 256, 'at most 256 inputs').optional(),
  })
  .strict();
export type DesiredStateRequest = z.infer<typeof desiredStateSchema>;

export const osidParam = z.string().max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[a-z0-9]{5}$/, 'an OSID is <type>-<5 lowercase alphanumerics>');

export interface BundleSourceView {
  name: string;
  url: string;
  ref: string;
  path: string;
  /** Whether the source has credentials of its own (they are never shown). */
  credentials: boolean;
  /** The commit the ref resolved to when the source was registered (null: registered before this was kept). */
  commit: string | null;
  /** The bundle at that commit (null: it did not validate, see bundleError, or not known). */
  bundle: BundleInfo | null;
  /** Why the bundle at that commit did not validate. */
  bundleError?: string;
  createdAt: string;
  updatedAt: string;
}

/** A bundle's name, version, description and typed inputs (bundle.yaml), for a deploy form. */
export interface BundleInfo {
  name: string;
  version: string;
  description?: string;
  inputs: Record<string, { type: 'string' | 'number' | 'boolean'; description?: string; required: boolean; default?: string | number | boolean }>;
}

export type InstanceState = 'deploying' | 'deployed' | 'failed' | 'deleting' | 'deleted' | 'delete_failed';

export interface InstanceView {
  osid: string;
  cluster: string;
  namespace: string;
  host: string;
  /** Declared ports and their hosts (`<osid>-<port>.<clusterDomain>`). */
  ports: Record<string, string>;
  bundle: { source: string; name: string; version: string; url: string; path: string; commit: string };
  /** Resolved inputs (defaults included). */
  inputs: Record<string, unknown>;
  state: InstanceState;
  /** The version of the desired state it deploys (see versions). */
  version: number;
  job: { id: number; action: 'apply' | 'delete'; state: CommandState; error: CommandError | null };
  /** Non-sensitive outputs of the last succeeded deployment. */
  outputs: Record<string, unknown>;
  /** Sensitive outputs: only where they are (a Secret in the instance's namespace). */
  sensitiveOutputs: Record<string, { secret: { namespace: string; name: string; key: string }; description?: string }>;
  /** What the last drift check (`tether diff`) found; `unknown` before any ended. */
  syncStatus: 'synced' | 'drifted' | 'error' | 'unknown';
  lastCheckedAt: string | null;
  /** Scheduled drift checks in force: the instance's own interval or the server's (`--drift-interval`), or off. */
  driftCheck: { intervalSeconds: number } | 'off';
  /** A check that finds drift submits a sync (off by default). */
  autoSync: boolean;
  /** When the next scheduled check is due; null: off, deleted, or not placed yet (within one tick). */
  nextCheckAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** One version of an instance's desired state. */
export interface InstanceVersionView {
  version: number;
  /** deploy: the first; upgrade: the source's ref pinned again; rollback: rollbackOf deployed again; sync: the same desired state applied again. */
  action: 'deploy' | 'upgrade' | 'rollback' | 'sync';
  rollbackOf: number | null;
  createdAt: string;
  bundle: { name: string; version: string; url: string; path: string; commit: string };
  /** Resolved inputs (defaults of that bundle included); never secret values (those are secretRefs). */
  inputs: Record<string, unknown>;
  /** Its apply job; state null once retention deleted it. job null: not known (versions from before 0006). */
  job: { id: number; state: CommandState | null } | null;
}

export interface DeployResponse {
  osid: string;
  jobId: number;
  /** The version this job deploys (a delete: the current one). */
  version: number;
  instance: InstanceView;
}

/** What a drift check was queued as, and the resources its desired state would remove (in that order). */
export interface DiffResponse {
  osid: string;
  jobId: number;
  /** The instance's own check was already queued or running: this is that job (200), none was queued. */
  reused: boolean;
  prune: { name: string; type: 'helm' | 'manifest' | 'tofu'; action: 'helm uninstall' | 'manifest delete' | 'tofu destroy' }[];
}

export interface ValidationView {
  valid: boolean;
  problems: Problem[];
}
