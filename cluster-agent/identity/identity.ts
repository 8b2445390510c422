/**
 * The agent's identity: its private key (generated here, never sent anywhere), its client
 * certificate and the control plane's CA, kept in a Secret in the agent's own namespace. The
 * first start trades the one-time bootstrap token for a certificate; later starts reuse the
 * Secret. The certificate is renewed (same key, new CSR) in the last third of its life.
 */
import { createPublicKey } from 'node:crypto';
import pRetry from 'p-retry';
import { bootstrapAgent, type AgentClient } from '../../common/agent/agent-client.ts';
import { certificateTimes, createCsr, generateKeyPair, shouldRenew, type KeyPair } from '../../common/csr.ts';
import { TetherError, errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { KubeAccess } from '../kube/kube.ts';
import { applySecret, readSecretData } from '../kube/secrets.ts';

export interface StoredIdentity {
  agentId: string;
  aid: string;
  cid: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

export class IdentitySecretStore {
  readonly namespace: string;
  readonly name: string;
  private readonly kube: KubeAccess;
  private readonly ownerConfigMap: string | undefined;

  /** `ownerConfigMap`: a ConfigMap of the same namespace whose deletion deletes the Secret (garbage collection). */
  constructor(kube: KubeAccess, namespace: string, name: string, ownerConfigMap?: string) {
    this.kube = kube;
    this.namespace = namespace;
    this.name = name;
    this.ownerConfigMap = ownerConfigMap;
  }

  /** The owner reference to the ConfigMap, read each time the Secret is written (rarely: bootstrap, renewal). */
  private async owner(): Promise<{ apiVersion: string; kind: string; name: string; uid: string }[] | undefined> {
    if (!this.ownerConfigMap) return undefined;
    let uid: string | undefined;
    try {
      uid = (await this.kube.core.readNamespacedConfigMap({ name: this.ownerConfigMap, namespace: this.namespace })).metadata?.uid;
    } catch (err) {
      throw new TetherError('kube_error', `cannot read the identity's owner ConfigMap ${this.namespace}/${this.ownerConfigMap}: ${errorMessage(err)}`);
    }
    if (!uid) throw new TetherError('kube_error', `the identity's owner ConfigMap ${this.namespace}/${this.ownerConfigMap} has no uid`);
    return [{ apiVersion: 'v1', kind: 'ConfigMap', name: this.ownerConfigMap, uid }];
  }

  async load(): Promise<StoredIdentity | undefined> {
    const d = await readSecretData(this.kube.core, this.namespace, this.name);
    if (!d) return undefined;
    const need = ['tls.key', 'tls.crt', 'ca.crt', 'agent-id', 'aid', 'cid'];
    const missing = need.filter((k) => !d[k]);
    if (missing.length) throw new TetherError('identity_invalid', `Secret ${this.namespace}/${this.name} lacks ${missing.join(', ')}; delete it and bootstrap again`);
    return { keyPem: d['tls.key']!, certPem: d['tls.crt']!, caPem: d['ca.crt']!, agentId: d['agent-id']!, aid: d.aid!, cid: d.cid! };
  }

  async save(id: StoredIdentity, opts: { dryRun?: boolean } = {}): Promise<void> {
    await applySecret(
      this.kube.objects,
      {
        namespace: this.namespace,
        name: this.name,
        data: { 'tls.key': id.keyPem, 'tls.crt': id.certPem, 'ca.crt': id.caPem, 'agent-id': id.agentId, aid: id.aid, cid: id.cid },
        labels: { 'app.kubernetes.io/component': 'identity' },
        annotations: id.certPem ? { 'tether.dev/certificate-expires-at': certificateTimes(id.certPem).notAfter.toISOString() } : undefined,
        ownerReferences: await this.owner(),
      },
      opts,
    );
  }
}

export interface LoadOptions {
  store: IdentitySecretStore;
  /** One control-plane URL or several (comma-separated or a list). */
  url: string | readonly string[];
  caPem: string;
  bootstrapToken?: string;
  log: Logger;
  signal?: AbortSignal;
}

const retryOpts = (log: Logger, what: string, signal?: AbortSignal) => ({
  retries: Number.POSITIVE_INFINITY,
  factor: 2,
  minTimeout: 1000,
  maxTimeout: 60_000,
  randomize: true,
  signal,
  shouldRetry: ({ error }: { error: Error }) => !(error instanceof TetherError) || error.retryable,
  onFailedAttempt: ({ error, attemptNumber, retryDelay }: { error: Error; attemptNumber: number; retryDelay: number }) =>
    log.warn({ err: error, attempt: attemptNumber, retryInMs: retryDelay }, `${what} failed; retrying`),
});

/** The stored identity, or a new one from the bootstrap token (stored before it is used). */
export async function loadOrBootstrap(o: LoadOptions): Promise<StoredIdentity> {
  const where = `${o.store.namespace}/${o.store.name}`;
  const existing = await pRetry(() => o.store.load(), retryOpts(o.log, 'reading the identity Secret', o.signal));
  if (existing) {
    o.log.info({ agentId: existing.agentId, cid: existing.cid, secret: where }, 'identity found in the cluster; skipping bootstrap');
    return existing;
  }
  if (!o.bootstrapToken) {
    throw new TetherError('no_identity', `no identity Secret ${where} and no bootstrap token (set TETHER_BOOTSTRAP_TOKEN for the first start)`);
  }
  const keys = generateKeyPair();
  // The token is single-use: make sure the Secret can be written before spending it.
  const probe: StoredIdentity = { agentId: 'probe', aid: 'probe', cid: 'probe', keyPem: 'probe', certPem: '', caPem: o.caPem };
  await pRetry(() => o.store.save(probe, { dryRun: true }), retryOpts(o.log, 'checking the identity Secret can be written', o.signal));

  o.log.info({ url: o.url }, 'no identity yet: bootstrapping with the token');
  const res = await pRetry(
    () => bootstrapAgent({ url: o.url, caPem: o.caPem, token: o.bootstrapToken!, keys }),
    retryOpts(o.log, 'bootstrap', o.signal),
  );
  if (res.role !== 'cluster-agent') throw new TetherError('wrong_role', `the bootstrap token is for a ${res.role} agent, not a cluster agent`);
  const identity: StoredIdentity = { agentId: res.agentId, aid: res.aid, cid: res.cid, keyPem: keys.privateKeyPem, certPem: res.certificate, caPem: res.caCertificate };
  await pRetry(() => o.store.save(identity), { ...retryOpts(o.log, 'storing the identity Secret', o.signal), retries: 20 });
  o.log.info({ agentId: res.agentId, aid: res.aid, cid: res.cid, expiresAt: res.expiresAt, secret: where }, 'bootstrapped; identity stored');
  return identity;
}

function keyPairOf(keyPem: string): KeyPair {
  return { privateKeyPem: keyPem, publicKeyPem: createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString() };
}

/** Checks the certificate periodically and renews it in the last third of its life. */
export class CertificateRenewer {
  private identity: StoredIdentity;
  private readonly client: AgentClient;
  private readonly store: IdentitySecretStore;
  private readonly log: Logger;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;

  constructor(o: { identity: StoredIdentity; client: AgentClient; store: IdentitySecretStore; log: Logger; intervalMs: number }) {
    this.identity = o.identity;
    this.client = o.client;
    this.store = o.store;
    this.log = o.log;
    this.intervalMs = o.intervalMs;
  }

  get current(): StoredIdentity {
    return this.identity;
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async check(): Promise<void> {
    try {
      await this.renewIfDue();
    } catch (err) {
      this.log.error({ err }, 'certificate renewal failed; will retry');
    }
  }

  /** Renews when due (at `now`); true when it did. Concurrent calls share one renewal. */
  renewIfDue(now = Date.now()): Promise<boolean> {
    this.running ??= this.renew(now).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async renew(now: number): Promise<boolean> {
    if (!shouldRenew(this.identity.certPem, now)) return false;
    this.log.info({ expiresAt: certificateTimes(this.identity.certPem).notAfter.toISOString() }, 'renewing the client certificate');
    const res = await this.client.renew(createCsr(keyPairOf(this.identity.keyPem), 'tether-agent'));
    const next = { ...this.identity, certPem: res.certificate };
    await this.store.save(next);
    this.client.setCertificate(res.certificate);
    this.identity = next;
    this.log.info({ expiresAt: res.expiresAt }, 'client certificate renewed and stored');
    return true;
  }
}
