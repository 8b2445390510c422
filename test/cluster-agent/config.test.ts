/** The agent configuration: flags over environment variables, defaults, refusals. */
import assert from 'node:assert/strict';
import { configFromArgv } from '../../cluster-agent/config/cluster.config.ts';

const argv = (...a: string[]) => ['node', 'main.ts', ...a];
const env = { TETHER_URL: 'https://cp.example:8443', TETHER_CA_FILE: '/etc/tether/ca.crt', TETHER_AGENT_NAMESPACE: 'tether-system' };

describe('cluster agent configuration', () => {
  it('reads the environment and fills in defaults', () => {
    const c = configFromArgv(argv(), env);
    assert.equal(c.url, 'https://cp.example:8443');
    assert.equal(c.agentNamespace, 'tether-system');
    assert.equal(c.identitySecret, 'tether-agent-identity');
    assert.equal(c.kubeconfig, undefined, 'in-cluster unless KUBECONFIG is set');
    assert.equal(c.heartbeatIntervalMs, 5000);
    assert.equal(c.helmBin, 'helm');
    assert.equal(c.concurrency, 2);
  });

  it('lets flags win over the environment', () => {
    const c = configFromArgv(argv('--concurrency', '4', '--helm-bin', '/opt/helm', '--heartbeat-interval-ms', '250', '--kubeconfig', '/k/config'), { ...env, TETHER_CONCURRENCY: '1' });
    assert.equal(c.concurrency, 4);
    assert.equal(c.helmBin, '/opt/helm');
    assert.equal(c.heartbeatIntervalMs, 250);
    assert.equal(c.kubeconfig, '/k/config');
  });

  it('takes several replicas comma-separated (TETHER_URL or --url)', () => {
    assert.equal(configFromArgv(argv('--url', 'https://a:8443,https://b:8443'), env).url, 'https://a:8443,https://b:8443');
  });

  it('refuses a plain-http URL, a bad namespace and nonsense numbers', () => {
    assert.throws(() => configFromArgv(argv(), { ...env, TETHER_URL: 'http://cp:8443' }));
    assert.throws(() => configFromArgv(argv(), { ...env, TETHER_URL: 'https://cp:8443,http://cp2:8443' }), /must be https:\/\/ \(got http:\/\/cp2:8443\)/);
    assert.throws(() => configFromArgv(argv(), { ...env, TETHER_AGENT_NAMESPACE: 'Not_A_Namespace' }));
    assert.throws(() => configFromArgv(argv('--concurrency', 'many'), env));
    assert.throws(() => configFromArgv(argv(), { TETHER_URL: env.TETHER_URL }), /caFile|agentNamespace/);
  });
});
