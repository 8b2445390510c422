/**
 * The agent's identity against a real control plane and a real kube-apiserver: bootstrap stores
 * key + certificate + CA in a Secret, a later load reuses it, and renewal (driven by the clock
 * passed in, not by waiting) stores and uses a new certificate.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { certificateTimes } from '../../common/csr.ts';
import { TetherError } from '../../common/errors.ts';
import { silentLogger } from '../../common/logger.ts';
import { CertificateRenewer, IdentitySecretStore, loadOrBootstrap } from '../../cluster-agent/identity/identity.ts';
import { connectKube, type KubeAccess } from '../../cluster-agent/kube/kube.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { createNamespace, secretData } from './support.ts';

describe('cluster agent identity', function () {
  this.timeout(120_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let kube: KubeAccess;
  const log = silentLogger();
  const NS = 'agent-ns';

  before(async () => {
    dir = tempDir('tether-ca-identity-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), renewWithinFraction: 1 }) /* the renewer is driven by its own clock; the server's renewal window is tested in test/faults/hostile-tenant.test.ts */]);
    await t.createCluster('gamma');
    await createNamespace(env, NS);
    kube = connectKube({ kubeconfig: env.kubeconfigPath, workDir: dir });
  });
  after(async () => {
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('bootstraps once, then reuses the stored identity; renews before expiry and uses the new certificate', async () => {
    const store = new IdentitySecretStore(kube, NS, 'tether-agent-identity');
    const token = await t.bootstrapToken('gamma', 'cluster-agent');
    const first = await loadOrBootstrap({ store, url: t.url, caPem: t.caPem, bootstrapToken: token, log });
    assert.equal(first.cid, 'gamma');
    const stored = await secretData(env, NS, 'tether-agent-identity');
    assert.equal(stored?.['tls.crt'], first.certPem);
    assert.equal(stored?.['tls.key'], first.keyPem);

    // The token is spent: a second load must not need it.
    const again = await loadOrBootstrap({ store, url: t.url, caPem: t.caPem, bootstrapToken: token, log });
    assert.deepEqual(again, first);

    const client = new AgentClient(t.url, { certPem: first.certPem, keyPem: first.keyPem, caPem: t.caPem });
    try {
      const renewer = new CertificateRenewer({ identity: first, client, store, log, intervalMs: 3_600_000 });
      assert.equal(await renewer.renewIfDue(Date.now()), false, 'a fresh certificate is not renewed');
      const nearExpiry = certificateTimes(first.certPem).notAfter.getTime() - 60_000;
      assert.equal(await renewer.renewIfDue(nearExpiry), true);
      const renewed = await secretData(env, NS, 'tether-agent-identity');
      assert.notEqual(renewed?.['tls.crt'], first.certPem, 'the Secret holds the new certificate');
      assert.equal(renewed?.['tls.key'], first.keyPem, 'same key');
      assert.equal(renewer.current.certPem, renewed?.['tls.crt']);
      await client.heartbeat({ version: 'test', metrics: {}, running: [] }); // over the renewed certificate
    } finally {
      client.close();
    }
  });

  it('refuses to start without an identity Secret and without a token', async () => {
    const store = new IdentitySecretStore(kube, NS, 'missing-identity');
    await assert.rejects(loadOrBootstrap({ store, url: t.url, caPem: t.caPem, log }), (e: unknown) => e instanceof TetherError && e.code === 'no_identity');
  });

  it('does not retry a refused bootstrap token, and stores nothing', async () => {
    const store = new IdentitySecretStore(kube, NS, 'refused-identity');
    await assert.rejects(loadOrBootstrap({ store, url: t.url, caPem: t.caPem, bootstrapToken: 'tether_bt_not-a-real-token', log }), (e: unknown) => e instanceof TetherError && e.status >= 400 && e.status < 500);
    assert.equal(await secretData(env, NS, 'refused-identity'), undefined);
  });
});
