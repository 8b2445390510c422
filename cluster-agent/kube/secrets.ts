/**
 * Kubernetes Secrets as the agent uses them: reading references at execution time, and writing
 * outputs (and its own identity) with server-side apply. Values never leave this process except
 * into the cluster; errors name secrets and keys, never their content.
 */
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { CommandFailure } from '../../common/errors.ts';
import type { SecretRef } from '../../common/specs.ts';
import { kubeMessage, kubeStatus, type ObjectApi } from './kube.ts';

export const FIELD_MANAGER = 'tether';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'tether' };

/** A Secret's data decoded as UTF-8 strings; undefined when it does not exist. */
export async function readSecretData(core: CoreV1Api, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  let secret: V1Secret;
  try {
    secret = await core.readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (kubeStatus(err) === 404) return undefined;
    throw new CommandFailure('kube_error', `cannot read Secret ${namespace}/${name}: ${kubeMessage(err)}`, { cause: err });
  }
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

/** Deletes a Secret; true when it existed. */
export async function deleteSecret(core: CoreV1Api, namespace: string, name: string): Promise<boolean> {
  try {
    await core.deleteNamespacedSecret({ name, namespace });
    return true;
  } catch (err) {
    if (kubeStatus(err) === 404) return false;
    throw new CommandFailure('kube_error', `cannot delete Secret ${namespace}/${name}: ${kubeMessage(err)}`, { cause: err });
  }
}

/** Creates or updates a Secret (server-side apply, field manager "tether"), replacing its data. */
export async function applySecret(
  objects: ObjectApi,
  s: {
    namespace: string;
    name: string;
    data: Record<string, string>;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  },
  opts: { dryRun?: boolean } = {},
): Promise<void> {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.data)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  const body = {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: s.name,
      namespace: s.namespace,
      labels: { ...MANAGED_BY, ...s.labels },
      ...(s.annotations ? { annotations: s.annotations } : {}),
      ...(s.ownerReferences ? { ownerReferences: s.ownerReferences } : {}),
    },
    data,
  };
  try {
    await objects.apply(body, { fieldManager: FIELD_MANAGER, force: true, dryRun: opts.dryRun });
  } catch (err) {
    throw new CommandFailure('kube_error', `cannot write Secret ${s.namespace}/${s.name}: ${kubeMessage(err)}`, { cause: err });
  }
}

/**
 * Resolves {secretRef} values for one execution (each Secret read once) and registers every value
 * it hands out with `mask`, so a value never appears in a log line sent to the control plane.
 */
export class SecretResolver {
  private readonly core: CoreV1Api;
  private readonly mask: (value: string) => void;
  private readonly cache = new Map<string, Promise<Record<string, string> | undefined>>();

  constructor(core: CoreV1Api, mask: (value: string) => void) {
    this.core = core;
    this.mask = mask;
  }

  async resolve(ref: SecretRef, defaultNamespace: string): Promise<string> {
    const namespace = ref.namespace ?? defaultNamespace;
    const id = `${namespace}/${ref.name}`;
    let data = this.cache.get(id);
    if (!data) {
      data = readSecretData(this.core, namespace, ref.name);
      this.cache.set(id, data);
    }
    const secret = await data;
    if (!secret) throw new CommandFailure('secret_not_found', `Secret ${id} (referenced by a secretRef) does not exist`);
    const value = secret[ref.key];
    if (value === undefined) throw new CommandFailure('secret_key_not_found', `Secret ${id} has no key "${ref.key}"`);
    this.mask(value);
    return value;
  }
}
