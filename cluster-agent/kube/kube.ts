/**
 * Access to the cluster: a KubeConfig for the API client and a kubeconfig FILE for helm and tofu
 * (they always get it explicitly). Outside a cluster that is the given file; in-cluster the agent
 * writes one (0600) that points at the service account's token and CA files, so rotated tokens
 * keep working.
 */
import { join } from 'node:path';
import { CoreV1Api, HttpMethod, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject, type V1APIResource } from '@kubernetes/client-node';
import { writeFileAtomic } from '../../common/files.ts';
import type { TofuCluster } from '../tofu/tofu.plan.ts';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeAccess {
  kc: KubeConfig;
  core: CoreV1Api;
  objects: ObjectApi;
  /** kubeconfig file handed to helm and tofu. */
  kubeconfigPath: string;
  inCluster: boolean;
  /** The cluster as tofu modules get it (tofu/tofu.plan.ts tofuEnv). */
  tofuCluster: TofuCluster;
}

/**
 * KubernetesObjectApi with its discovery (kind -> resource, namespaced or not) made usable, and a
 * server-side apply that sends the object exactly as given. (The library's `patch` first runs the
 * object through its typed model, which silently drops keys it spells differently, such as
 * `x-kubernetes-preserve-unknown-fields` in a CRD, and any field newer than the library.)
 */
export class ObjectApi extends KubernetesObjectApi {
  async apply<T extends KubernetesObject>(obj: T, opts: { fieldManager: string; force?: boolean; dryRun?: boolean }): Promise<KubernetesObject> {
    const path = await this.specUriPath(obj, 'patch');
    const ctx = this.configuration.baseServer.makeRequestContext(path, HttpMethod.PATCH);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('Content-Type', PatchStrategy.ServerSideApply);
    ctx.setQueryParam('fieldManager', opts.fieldManager);
    if (opts.force) ctx.setQueryParam('force', 'true');
    if (opts.dryRun) ctx.setQueryParam('dryRun', 'All');
    ctx.setBody(JSON.stringify(obj));
    return this.requestPromise(ctx);
  }

  async lookup(apiVersion: string, kind: string): Promise<V1APIResource | undefined> {
    return this.resource(apiVersion, kind);
  }
  /** Forgets cached discovery (after CRDs were applied). */
  forget(apiVersion: string): void {
    delete this.apiVersionResourceCache[apiVersion];
  }
}

/**
 * `env`: where the in-cluster service variables are read (the library's loadFromCluster reads
 * the same ones); they are handed on to tofu, whose environment is otherwise allow-listed.
 */
export function connectKube(opts: { kubeconfig?: string; workDir: string }, env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const kc = new KubeConfig();
  let kubeconfigPath: string;
  const inCluster = !opts.kubeconfig;
  if (opts.kubeconfig) {
    kc.loadFromFile(opts.kubeconfig);
    kubeconfigPath = opts.kubeconfig;
  } else {
    kc.loadFromCluster();
    kubeconfigPath = join(opts.workDir, 'in-cluster.kubeconfig');
    writeFileAtomic(kubeconfigPath, inClusterKubeconfig(kc.getCurrentCluster()?.server ?? ''), 0o600);
  }
  const tofuCluster: TofuCluster = inCluster
    ? { inCluster: true, ...(env.KUBERNETES_SERVICE_HOST ? { serviceHost: env.KUBERNETES_SERVICE_HOST } : {}), ...(env.KUBERNETES_SERVICE_PORT ? { servicePort: env.KUBERNETES_SERVICE_PORT } : {}) }
    : { inCluster: false, kubeconfigPath };
  return { kc, core: kc.makeApiClient(CoreV1Api), objects: kc.makeApiClient(ObjectApi), kubeconfigPath, inCluster, tofuCluster };
}

export function inClusterKubeconfig(server: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'in-cluster', cluster: { server, 'certificate-authority': `${SA_DIR}/ca.crt` } }],
    users: [{ name: 'service-account', user: { tokenFile: `${SA_DIR}/token` } }],
    contexts: [{ name: 'in-cluster', context: { cluster: 'in-cluster', user: 'service-account' } }],
    'current-context': 'in-cluster',
  });
}

/** The HTTP status of a Kubernetes API error (ApiException.code), if it is one. */
export function kubeStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Whether the API server refused a request for what it is (a permanent failure: schema or
 * validation 400/422, RBAC 403, a missing namespace 404, ...), as opposed to a failure that can
 * pass (no answer, 5xx, 401 while a token rotates, 408, 409 conflicts, 429).
 */
export function kubeRejected(err: unknown): boolean {
  const status = kubeStatus(err);
  if (status === undefined) return false;
  // Server-side apply answers a field of the wrong type with a 500 (it cannot build the typed
  // object): a schema error all the same.
  if (status === 500 && /failed to create typed patch object/.test(kubeMessage(err))) return true;
  return status >= 400 && status < 500 && ![401, 408, 409, 429].includes(status);
}

/** A short message for a Kubernetes API error: the Status message when there is one. */
export function kubeMessage(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      /* not JSON */
    }
  } else if (body && typeof body === 'object' && 'message' in body && typeof body.message === 'string') {
    return body.message;
  }
  return err instanceof Error ? err.message : String(err);
}
