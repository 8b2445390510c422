/** The tofu invocation as pure functions: backend override, arguments, output splitting. */
import assert from 'node:assert/strict';
import { backendOverride, outputsSecretName, splitOutputs, stateSecretName, tofuApplyArgs, tofuEnv, tofuInitArgs, tofuOutputArgs } from '../../cluster-agent/tofu.plan.ts';

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
});
