/** The node configuration file: where it is, validation, relative paths, and the 0600 write. */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, configPath, controlPlaneUrls, defaultStateDir, loadNodeConfig, parseNodeConfig, renderNodeConfig, saveNodeConfig, DEFAULT_CONFIG_PATH, type NodeConfig } from '../../node-agent/config/node.config.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';

const base = {
  nodeId: 'n1', agentId: 'nd-abc', accountId: 'ab12c', cluster: 'c01', server: 'https://cp:8443',
  caFile: 'ca.crt', certFile: 'node.crt', keyFile: 'node.key', stateDir: 'state',
};

describe('node agent: configuration', () => {
  it('--config beats TETHER_NODE_CONFIG beats the default', () => {
    assert.equal(configPath('/x/c.yaml', { TETHER_NODE_CONFIG: '/y/c.yaml' }), '/x/c.yaml');
    assert.equal(configPath(undefined, { TETHER_NODE_CONFIG: '/y/c.yaml' }), '/y/c.yaml');
    assert.equal(configPath(undefined, {}), DEFAULT_CONFIG_PATH);
    assert.equal(defaultStateDir(DEFAULT_CONFIG_PATH), '/var/lib/tether');
    assert.equal(defaultStateDir('/tmp/a/config.yaml'), '/tmp/a/state');
  });

  it('fills defaults and resolves relative paths against the file', () => {
    const c = parseNodeConfig(JSON.stringify(base), '/etc/t/config.yaml');
    assert.equal(c.keyFile, '/etc/t/node.key');
    assert.equal(c.stateDir, '/etc/t/state');
    assert.equal(c.heartbeatIntervalMs, 5000);
    assert.deepEqual(c.network.wg0, { interface: 'wg0', listenPort: 51820 });
    assert.equal(c.network.manageVpn, true);
  });

  it('takes more replicas in servers (server first, duplicates dropped); each must be https', () => {
    const c = parseNodeConfig(JSON.stringify({ ...base, servers: ['https://cp2:8443', 'https://cp:8443'] }), '/c.yaml');
    assert.deepEqual(controlPlaneUrls(c), ['https://cp:8443', 'https://cp2:8443']);
    assert.deepEqual(controlPlaneUrls(parseNodeConfig(JSON.stringify(base), '/c.yaml')), ['https://cp:8443']);
    assert.throws(() => parseNodeConfig(JSON.stringify({ ...base, servers: ['http://cp2'] }), '/c.yaml'), /servers\.0: .*https/);
  });

  it('refuses unknown keys, bad values and clashing interfaces with the path in the message', () => {
    assert.throws(() => parseNodeConfig(JSON.stringify({ ...base, extra: 1 }), '/c.yaml'), (e: ConfigError) => /\/c\.yaml: .*extra/.test(e.message));
    assert.throws(() => parseNodeConfig(JSON.stringify({ ...base, server: 'http://cp' }), '/c.yaml'), /https/);
    assert.throws(() => parseNodeConfig(JSON.stringify({ ...base, network: { wg0: { interface: 'wg0', listenPort: 1 }, wg1: { interface: 'wg0', listenPort: 2 } } }), '/c.yaml'), /different interface names/);
    assert.throws(() => parseNodeConfig(JSON.stringify({ ...base, network: { wg0: { interface: 'this-name-is-too-long', listenPort: 1 } } }), '/c.yaml'), /interface name/);
    assert.throws(() => parseNodeConfig(': : :', '/c.yaml'), ConfigError);
  });

  it('reads YAML 1.2 with the core schema: dates and yes/no stay strings, duplicate keys and empty files are refused', () => {
    const yaml = ['nodeId: n1', 'agentId: 2024-01-01', 'accountId: ab12c', 'cluster: c01', 'server: https://cp:8443', 'caFile: ca.crt', 'certFile: node.crt', 'keyFile: node.key', 'stateDir: state', 'network:', '  wg0: {interface: wg9, listenPort: 51830}', '  endpointAddress: yes'].join('\n');
    const c = parseNodeConfig(yaml, '/etc/t/config.yaml');
    assert.equal(c.agentId, '2024-01-01');
    assert.equal(c.network.endpointAddress, 'yes');
    assert.deepEqual(c.network.wg0, { interface: 'wg9', listenPort: 51830 });
    assert.throws(() => parseNodeConfig(`${yaml}\nnodeId: n2`, '/c.yaml'), (e: ConfigError) => e instanceof ConfigError && /not valid YAML/.test(e.message));
    assert.throws(() => parseNodeConfig(`${yaml.replace('yes', 'x')}\ncontrolPlane: yes`, '/c.yaml'), /controlPlane: .*expected boolean/);
    assert.throws(() => parseNodeConfig('', '/c.yaml'), ConfigError);
  });

  it('writes 0600 and reads back the same', () => {
    const dir = tempDir('tether-cfg-');
    try {
      const path = join(dir, 'config.yaml');
      const c: NodeConfig = parseNodeConfig(JSON.stringify(base), path);
      saveNodeConfig(path, c);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.deepEqual(loadNodeConfig(path), c);
      assert.match(renderNodeConfig(c), /^# tether-node configuration/);
      writeFileSync(join(dir, 'bad.yaml'), 'nodeId: [');
      assert.throws(() => loadNodeConfig(join(dir, 'bad.yaml')), ConfigError);
      assert.throws(() => loadNodeConfig(join(dir, 'missing.yaml')), /run `tether-node register` first/);
    } finally {
      removeDir(dir);
    }
  });
});
