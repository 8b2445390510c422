// Smoke test of the pinned test toolchain: envtest (etcd + kube-apiserver) serves the REST API,
// and helm/tofu/kubectl run and report the versions pinned in test/toolchain/versions.env.
// Needs `bash test/toolchain/install.sh` to have run.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { kubeRequest, startEnvtest } from '../support/envtest.ts';
import type { Envtest } from '../support/envtest.ts';
import { toolPath, toolVersion } from '../support/toolchain.ts';

const execFileP = promisify(execFile);

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function run(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout, stderr } = await execFileP(bin, args, {
    env: { ...process.env, CHECKPOINT_DISABLE: '1', ...env },
    timeout: 60_000,
  });
  return `${stdout}${stderr}`;
}

interface ConfigMap {
  metadata: { name: string; namespace: string; uid?: string };
  data?: Record<string, string>;
}

describe('test toolchain', function () {
  describe('envtest (etcd + kube-apiserver)', function () {
    this.timeout(180_000);
    let env: Envtest | undefined;

    before(async function () {
      env = await startEnvtest();
    });

    after(async function () {
      await env?.stop();
    });

    it('serves /version with the pinned Kubernetes version', async function () {
      const res = await kubeRequest<{ gitVersion: string }>(env!, 'GET', '/version');
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.gitVersion, toolVersion('kube-apiserver'));
    });

    it('creates a namespace and a ConfigMap through the REST API and reads it back', async function () {
      const e = env!;
      const ns = `toolchain-${Date.now().toString(36)}`;
      const nsRes = await kubeRequest(e, 'POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns },
      });
      assert.equal(nsRes.status, 201, nsRes.text);

      const created = await kubeRequest<ConfigMap>(e, 'POST', `/api/v1/namespaces/${ns}/configmaps`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'greeting' },
        data: { hello: 'world', multi: 'line 1\nline 2' },
      });
      assert.equal(created.status, 201, created.text);
      assert.ok(created.body.metadata.uid);

      const got = await kubeRequest<ConfigMap>(e, 'GET', `/api/v1/namespaces/${ns}/configmaps/greeting`);
      assert.equal(got.status, 200, got.text);
      assert.equal(got.body.metadata.namespace, ns);
      assert.equal(got.body.metadata.uid, created.body.metadata.uid);
      assert.deepEqual(got.body.data, { hello: 'world', multi: 'line 1\nline 2' });

      // The admin client certificate (O=system:masters) works as well as the token.
      const viaCert = await kubeRequest<ConfigMap>(
        { ...e, token: undefined },
        'GET',
        `/api/v1/namespaces/${ns}/configmaps/greeting`,
      );
      assert.equal(viaCert.status, 200, viaCert.text);
      assert.deepEqual(viaCert.body.data, got.body.data);

      // Unauthenticated requests are rejected.
      const anon = await kubeRequest(
        { url: e.url, caPem: e.caPem, token: undefined, clientCertPem: '', clientKeyPem: '' },
        'GET',
        '/api/v1/namespaces',
      );
      assert.equal(anon.status, 401, anon.text);
    });

    it('writes an admin kubeconfig that kubectl accepts', async function () {
      const e = env!;
      assert.equal(readFileSync(e.kubeconfigPath, 'utf8'), e.kubeconfigYaml);
      assert.match(e.kubeconfigYaml, new RegExp(`server: ${escapeRe(e.url)}\\n`));
      const kubectl = toolPath('kubectl'); // install.sh builds it with the rest: missing is a failure, not a skip
      const out = await run(kubectl, ['--kubeconfig', e.kubeconfigPath, 'auth', 'can-i', '*', '*', '--all-namespaces']);
      assert.equal(out.trim(), 'yes');
      const ns = await run(kubectl, ['--kubeconfig', e.kubeconfigPath, 'get', 'namespace', 'default', '-o', 'name']);
      assert.equal(ns.trim(), 'namespace/default');
    });

    it('stop() kills the processes and removes the temp dir', async function () {
      const e = env!;
      await e.stop();
      await e.stop(); // idempotent
      assert.equal(existsSync(e.tempDir), false);
      await assert.rejects(kubeRequest(e, 'GET', '/readyz', undefined, { timeoutMs: 5000 }));
      env = undefined;
    });
  });

  describe('pinned CLIs', function () {
    this.timeout(60_000);

    it('helm version prints the pinned version', async function () {
      const out = await run(toolPath('helm'), ['version', '--short']);
      assert.match(out, new RegExp(`^${escapeRe(toolVersion('helm'))}(\\+|$)`, 'm'));
    });

    it('tofu version prints the pinned version', async function () {
      const out = await run(toolPath('tofu'), ['version']);
      assert.match(out, new RegExp(`^OpenTofu ${escapeRe(toolVersion('tofu'))}$`, 'm'));
    });

    it('etcd and kube-apiserver report the pinned versions', async function () {
      const etcd = await run(toolPath('etcd'), ['--version']);
      assert.match(etcd, new RegExp(`etcd Version: ${escapeRe(toolVersion('etcd').replace(/^v/, ''))}\\n`));
      const api = await run(toolPath('kube-apiserver'), ['--version']);
      assert.equal(api.trim(), `Kubernetes ${toolVersion('kube-apiserver')}`);
    });
  });
});
