/** The tofu invocation as pure functions: backend override, arguments, output splitting. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectKube } from '../../cluster-agent/kube/kube.ts';
import {
  backendOverride,
  outputsSecretName,
  parseGoTime,
  parseStateLock,
  splitOutputs,
  staleLockVerdict,
  stateSecretName,
  tofuApplyArgs,
  tofuEnv,
  tofuForceUnlockArgs,
  tofuInitArgs,
  tofuInitHint,
  tofuOutputArgs,
} from '../../cluster-agent/tofu/tofu.plan.ts';

/** What `tofu apply` prints on stderr when the kubernetes backend's Lease is held. */
const LOCK_ERROR = `
Error: Error acquiring the state lock

Error message: the state is already locked by another terraform client
Lock Info:
  ID:        6f1c2a9e-3b4d-5e6f-8a9b-0c1d2e3f4a5b
  Path:      
  Operation: OperationTypeApply
  Who:       agent@host
  Version:   1.9.0
  Created:   2026-11-23 11:06:48.123456789 +0000 UTC
  Info:      


OpenTofu acquires a state lock to protect the state from being written
by multiple users at the same time. Please resolve the issue above and try
again. For most commands, you can disable locking with the "-lock=false"
flag, but this is not recommended.
`;

describe('tofu plan', () => {
  it('points the kubernetes backend at the agent kubeconfig outside a cluster', () => {
    const b = JSON.parse(backendOverride({ stateName: 'infra', namespace: 'tenant', inCluster: false, kubeconfigPath: '/k/config' }));
    assert.deepEqual(b, { terraform: { backend: { kubernetes: { secret_suffix: 'infra', namespace: 'tenant', config_path: '/k/config' } } } });
  });

  it('uses the in-cluster configuration inside a cluster', () => {
    const b = JSON.parse(backendOverride({ stateName: 's', namespace: 'n', inCluster: true, kubeconfigPath: '/ignored' }));
    assert.deepEqual(b.terraform.backend.kubernetes, { secret_suffix: 's', namespace: 'n', in_cluster_config: true });
  });

  it('never puts variables on the command line, only a var file path', () => {
    assert.deepEqual(tofuInitArgs(), ['init', '-input=false', '-no-color']);
    assert.deepEqual(tofuApplyArgs(), ['apply', '-auto-approve', '-input=false', '-no-color']);
    assert.deepEqual(tofuApplyArgs('/run/secret/vars.tfvars.json'), ['apply', '-auto-approve', '-input=false', '-no-color', '-var-file=/run/secret/vars.tfvars.json']);
    assert.deepEqual(tofuOutputArgs(), ['output', '-json', '-no-color']);
    for (const a of [...tofuInitArgs(), ...tofuApplyArgs('/x')]) assert.ok(!a.startsWith('-var='), a);
  });

  it('names the state and outputs Secrets after the state name', () => {
    assert.equal(stateSecretName('infra'), 'tfstate-default-infra');
    assert.equal(outputsSecretName('infra'), 'infra-outputs');
  });

  it('runs tofu non-interactively, with the configured CLI config and plugin cache', () => {
    assert.deepEqual(tofuEnv({}), { TF_IN_AUTOMATION: '1', TF_INPUT: '0', CHECKPOINT_DISABLE: '1' });
    const e = tofuEnv({ cliConfigFile: '/c/tofurc', pluginCacheDir: '/c/plugins' });
    assert.equal(e.TF_CLI_CONFIG_FILE, '/c/tofurc');
    assert.equal(e.TF_PLUGIN_CACHE_DIR, '/c/plugins');
  });

  it('gives modules the cluster the agent runs in: the in-cluster variables in a Pod, the agent\'s kubeconfig outside one', () => {
    const pod = tofuEnv({ cluster: { inCluster: true, serviceHost: '10.96.0.1', servicePort: '443' } });
    assert.equal(pod.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    assert.equal(pod.KUBERNETES_SERVICE_PORT, '443');
    assert.equal(pod.KUBE_CONFIG_PATH, undefined);
    assert.equal(pod.KUBECONFIG, undefined);
    const outside = tofuEnv({ cluster: { inCluster: false, kubeconfigPath: '/var/lib/tether/agent.kubeconfig' } });
    assert.equal(outside.KUBE_CONFIG_PATH, '/var/lib/tether/agent.kubeconfig');
    assert.equal(outside.KUBECONFIG, '/var/lib/tether/agent.kubeconfig');
    assert.equal(outside.KUBERNETES_SERVICE_HOST, undefined);
  });

  it('gives modules the cluster through the executor: connectKube hands the Pod\'s service variables or the kubeconfig on', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tofu-env-'));
    try {
      const kubeconfig = join(dir, 'kubeconfig');
      writeFileSync(kubeconfig, JSON.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }], users: [{ name: 'u', user: {} }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }], 'current-context': 'x' }));
      assert.deepEqual(connectKube({ kubeconfig, workDir: dir }).tofuCluster, { inCluster: false, kubeconfigPath: kubeconfig });
      const pod = connectKube({ workDir: dir }, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
      assert.deepEqual(pod.tofuCluster, { inCluster: true, serviceHost: '10.96.0.1', servicePort: '443' });
      const env = tofuEnv({ cluster: pod.tofuCluster });
      assert.deepEqual([env.KUBERNETES_SERVICE_HOST, env.KUBERNETES_SERVICE_PORT], ['10.96.0.1', '443']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how to configure a provider mirror when tofu init cannot install providers, and only then', () => {
    const offline = 'Error: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider hashicorp/random: could not connect to registry.opentofu.org: dial tcp: lookup registry.opentofu.org: no such host';
    const notMirrored = 'Error: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider hashicorp/random: provider registry.opentofu.org/hashicorp/random was not found in any of the search locations\n\n  - /srv/tofu-mirror';
    for (const stderr of [offline, notMirrored]) {
      const hint = tofuInitHint(stderr);
      assert.match(hint ?? '', /--tofu-cli-config-file/);
      assert.match(hint ?? '', /--tofu-plugin-cache-dir/);
      assert.match(hint ?? '', /filesystem_mirror|network_mirror/);
    }
    assert.equal(tofuInitHint('Error: Unsupported argument\n\n  on main.tf line 2'), undefined);
  });

  it('splits outputs: sensitive ones (and unknown sensitivity) stay out of the plain set', () => {
    const { plain, sensitive } = splitOutputs(JSON.stringify({
      url: { sensitive: false, type: 'string', value: 'https://x' },
      port: { sensitive: false, type: 'number', value: 8080 },
      password: { sensitive: true, type: 'string', value: 's3cret-pw' },
      conf: { sensitive: true, value: { a: 1 } },
      odd: { value: 'no sensitivity flag' },
    }));
    assert.deepEqual(plain, { url: 'https://x', port: 8080 });
    assert.deepEqual(sensitive, { password: 's3cret-pw', conf: '{"a":1}', odd: 'no sensitivity flag' });
    assert.deepEqual(splitOutputs(''), { plain: {}, sensitive: {} });
    assert.throws(() => splitOutputs('[1]'));
  });

  describe('a state lock left by a killed run', () => {
    const created = Date.parse('2026-11-23T11:06:48.123Z');

    it('reads the lock ID and creation time from tofu\'s lock error', () => {
      assert.deepEqual(parseStateLock(LOCK_ERROR), { id: '6f1c2a9e-3b4d-5e6f-8a9b-0c1d2e3f4a5b', createdAt: created, who: 'agent@host', operation: 'OperationTypeApply' });
    });

    it('finds no lock in other failures, nor an ID that could be read as an option', () => {
      assert.equal(parseStateLock('Error: Invalid provider configuration'), undefined);
      assert.equal(parseStateLock(''), undefined);
      assert.equal(parseStateLock(LOCK_ERROR.replace('6f1c2a9e-3b4d-5e6f-8a9b-0c1d2e3f4a5b', '-force')), undefined);
      assert.equal(parseStateLock(LOCK_ERROR.replace(/ID: .*/, 'ID:')), undefined);
    });

    it('keeps a lock whose time does not parse, without a creation time', () => {
      assert.equal(parseStateLock(LOCK_ERROR.replace(/Created: .*/, 'Created: yesterday'))?.createdAt, undefined);
    });

    it('parses Go and RFC 3339 times', () => {
      assert.equal(parseGoTime('2026-11-23 11:06:48.123456789 +0000 UTC'), created);
      assert.equal(parseGoTime('2026-11-23 13:06:48.123 +0200 CEST'), created);
      assert.equal(parseGoTime('2026-11-23T11:06:48.123Z'), created);
      assert.equal(parseGoTime('2026-11-23 11:06:48 +0000 UTC'), Date.parse('2026-11-23T11:06:48Z'));
      assert.equal(parseGoTime('soon'), undefined);
    });

    it('is stale only when created before this agent process started', () => {
      const lock = parseStateLock(LOCK_ERROR)!;
      const before = staleLockVerdict(lock, created + 1);
      assert.equal(before.stale, true);
      assert.match(before.reason, /before this agent process started/);
      assert.equal(staleLockVerdict(lock, created).stale, false, 'created the same millisecond: may be live');
      assert.equal(staleLockVerdict(lock, created - 60_000).stale, false, 'created since: may be live');
      assert.equal(staleLockVerdict({ id: 'x' }, Date.now()).stale, false, 'unknown age: may be live');
    });

    it('force-unlocks by ID, without a prompt', () => {
      assert.deepEqual(tofuForceUnlockArgs('6f1c2a9e'), ['force-unlock', '-force', '-no-color', '6f1c2a9e']);
    });
  });
});
