/**
 * `tether-node status` with several control-plane URLs (failover): each one's reachability, the one
 * the daemon last used, exit 0 while one is reachable and non-zero with a message when none is.
 * Two real control planes with the same CA and records (B is a copy of A's SQLite data folder), a
 * registered node, its daemon as a process (it moves from A to B when A stops).
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { sqliteOnly } from '../support/postgres.ts';
import { killAndWait, runNodeCli, startDaemon, type Daemon } from './support.ts';

interface Status {
  servers: { url: string; reachable: boolean; detail: string; lastUsed: boolean }[];
  controlPlane: { reachable: boolean };
}

describe('node agent: status with several control planes', function () {
  this.timeout(90_000);
  let a: TestControlPlane | undefined;
  let b: TestControlPlane | undefined;
  let dir: string;
  let config: string;
  let daemon: Daemon | undefined;

  const status = async () => {
    const r = await runNodeCli(['status', '--config', config, '--json']);
    return { ...r, json: JSON.parse(r.stdout) as Status };
  };

  before(async function () {
    sqliteOnly(this, 'the second control plane is a copy of the first one\'s SQLite data folder');
    dir = tempDir('tether-node-status-');
    a = await startTestControlPlane({ dataDir: join(dir, 'a') });
    await a.createCluster('nst');
    config = join(dir, 'etc', 'config.yaml');
    const token = await a.bootstrapToken('nst', 'node', false);
    const r = await runNodeCli(['register', '--aid', a.aid, '--control-plane', '0', '--server', a.url, '--ca-file', join(dir, 'a', 'ca.crt'), '--config', config, '--name', 'n1', '--no-vpn', '--heartbeat-interval-ms', '200'], { env: { TETHER_BOOTSTRAP_TOKEN: token } });
    assert.equal(r.code, 0, r.stderr);
    // B: the same CA, server certificate and agents, on a port of its own; A back on its port.
    const port = Number(new URL(a.url).port);
    await a.close();
    cpSync(join(dir, 'a'), join(dir, 'b'), { recursive: true });
    a = await startTestControlPlane({ dataDir: join(dir, 'a'), port });
    b = await startTestControlPlane({ dataDir: join(dir, 'b') });
    const c = YAML.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    writeFileSync(config, YAML.stringify({ ...c, servers: [b.url] }), { mode: 0o600 });
  });
  after(async () => {
    if (daemon) await killAndWait(daemon);
    await a?.close();
    await b?.close();
    if (dir) removeDir(dir);
  });

  it('reports each server; with A stopped the daemon moves to B and status says so (exit 0); none reachable: exit 1 with a message', async () => {
    const both = await status();
    assert.equal(both.code, 0, both.stderr);
    assert.deepEqual(both.json.servers.map((s) => [s.url, s.reachable]), [[a!.url, true], [b!.url, true]]);

    daemon = startDaemon(config);
    await eventually(() => /node agent started/.test(daemon!.output()), 20_000, 'the daemon started');
    await eventually(async () => (await status()).json.servers.find((s) => s.lastUsed)?.url === a!.url, 20_000, 'the daemon on A');

    await a!.close();
    a = undefined;
    await eventually(() => /moved to another control-plane replica/.test(daemon!.output()), 30_000, 'the daemon moved to B');
    const one = await status();
    assert.equal(one.code, 0, `one reachable is enough: ${one.stderr}`);
    const [sa, sb] = one.json.servers;
    assert.equal(sa!.reachable, false);
    assert.match(sa!.detail, /ECONNREFUSED|cannot reach/);
    assert.equal(sb!.reachable, true);
    assert.equal(sb!.lastUsed, true, 'B is the one the daemon last used');
    assert.equal(sa!.lastUsed, false);
    const text = await runNodeCli(['status', '--config', config]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^server {6}https:\/\/127\.0\.0\.1:\d+: UNREACHABLE \(/m);
    assert.match(text.stdout, new RegExp(`^server {6}${b!.url.replace(/\./g, '\\.')}: reachable \\(mTLS ok\\) \\[used by the daemon\\]$`, 'm'));

    await killAndWait(daemon);
    daemon = undefined;
    await b!.close();
    b = undefined;
    const none = await runNodeCli(['status', '--config', config]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no control plane is reachable \(tried https:\/\/127\.0\.0\.1:\d+, https:\/\/127\.0\.0\.1:\d+\)/);
    assert.equal((none.stdout.match(/UNREACHABLE/g) ?? []).length, 2, 'both shown');
  });
});
