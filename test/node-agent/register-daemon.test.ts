/**
 * The node agent's CLI and daemon as processes against a real control plane (in-process, on
 * loopback): register (key generated locally, 0600 files), refusals, the daemon's heartbeats and
 * metrics, preflight and install (dry-run) commands executed from the queue, status, certificate
 * renewal, graceful SIGTERM; and liveness (healthy → degraded → offline) driven by a manual clock.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import YAML from 'yaml';
import { ManualClock } from '../../common/clock.ts';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, stopProcess, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { killAndWait, runNodeCli, runTetherCli, startDaemon, type Daemon } from './support.ts';

describe('node agent: register and daemon (processes)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let config: string;
  let daemon: Daemon | undefined;

  const agentsList = async () => (await t.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents?cluster=nd1')).body.agents;
  const submit = async (type: string, spec: unknown) => (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'nd1', node: 'n1' }, type, spec })).body.id;
  const finished = (id: number) =>
    eventually(async () => {
      const j = (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 30_000, `job ${id}`);

  before(async () => {
    t = await startTestControlPlane({ renewWithinFraction: 1 }); // `certificate renew` of a fresh certificate (the renewal window: test/faults/hostile-tenant.test.ts)
    await t.createCluster('nd1');
    dir = tempDir('tether-node-');
    config = join(dir, 'etc', 'config.yaml');
  });
  after(async () => {
    if (daemon) await killAndWait(daemon);
    await t.close();
    removeDir(t.dataDir);
    removeDir(dir);
  });

  it('register: generates the key here, gets a certificate, writes 0600 key and config', async () => {
    const token = await t.bootstrapToken('nd1', 'node', false);
    const r = await runNodeCli(['register', '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', config, '--name', 'n1', '--no-vpn', '--heartbeat-interval-ms', '200'], { env: { TETHER_BOOTSTRAP_TOKEN: token } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /registered node n1 \(agent nd-[a-z0-9]+\) in cluster nd1/);
    assert.equal(statSync(config).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'etc', 'node.key')).mode & 0o777, 0o600);
    const c = YAML.parse(readFileSync(config, 'utf8'));
    assert.equal(c.nodeId, 'n1');
    assert.equal(c.accountId, t.aid);
    assert.equal(c.cluster, 'nd1');
    assert.equal(c.stateDir, join(dir, 'etc', 'state'));
    assert.equal(c.network.manageVpn, false);
    // The certificate matches the key that never left this folder.
    const cert = new X509Certificate(readFileSync(join(dir, 'etc', 'node.crt'), 'utf8'));
    const { createPrivateKey } = await import('node:crypto');
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'etc', 'node.key'), 'utf8'))));
    assert.doesNotMatch(r.stdout + r.stderr, /BEGIN .*PRIVATE KEY|tether_bt_/);
  });

  it('register refuses to overwrite, a token of the wrong role, and bad usage', async () => {
    const token = await t.bootstrapToken('nd1', 'node', false);
    const again = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--config', config]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /registered already/);
    const other = join(dir, 'other', 'config.yaml');
    const wrongRole = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '1', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', other, '--no-vpn']);
    assert.equal(wrongRole.code, 1);
    assert.match(wrongRole.stderr, /wrong_role/);
    const usage = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', 'yes', '--server', t.url, '--config', other]);
    assert.equal(usage.code, 2);
    assert.ok(!existsSync(other));
  });

  it('register --force with a spent token fails and leaves the registered key, certificate and config as they were', async () => {
    const token = await t.bootstrapToken('nd1', 'node', false);
    const spend = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', join(dir, 'spender', 'config.yaml'), '--name', 'spender', '--no-vpn']);
    assert.equal(spend.code, 0, spend.stderr);
    const files = ['node.key', 'node.crt', 'config.yaml'].map((f) => join(dir, 'etc', f));
    const before = files.map((f) => readFileSync(f));
    const again = await runNodeCli(['register', '--force', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', config, '--name', 'n1', '--no-vpn']);
    assert.equal(again.code, 1, again.stdout + again.stderr);
    assert.match(again.stderr, /token/);
    files.forEach((f, i) => assert.ok(readFileSync(f).equals(before[i]!), `${f} is unchanged`));
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(join(dir, 'etc')).filter((f) => f.includes('pending') || f.endsWith('.tmp')), [], 'no pending key left behind');
  });

  it('the daemon heartbeats with host metrics and shows healthy', async () => {
    daemon = startDaemon(config);
    const a = await eventually(async () => (await agentsList()).find((x) => x.nid === 'n1' && x.status === 'healthy' && x.metrics?.memoryTotalBytes), 20_000, 'a healthy heartbeat');
    assert.ok(a.metrics!.rssBytes! > 0);
    assert.equal(a.version, JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });

  it('runs preflight from the queue: the report is in the logs and the outcome matches it', async () => {
    const j = await finished(await submit('preflight', {}));
    const lines = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${j.id}/logs`)).body.lines.map((l) => l.text).join('\n');
    assert.match(lines, /CHECK\s+STATUS\s+DETAIL/);
    assert.match(lines, /control plane\s+PASS\s+https:\/\/127\.0\.0\.1:\d+: TLS verified/);
    if (j.state === 'succeeded') assert.ok((j.outputs as { report: { summary: { ok: boolean } } }).report.summary.ok);
    else assert.equal(j.error?.code, 'preflight_failed', JSON.stringify(j.error));
  });

  it('runs install as a dry run from the queue (nothing is executed or written)', async () => {
    const j = await finished(await submit('install', { dryRun: true }));
    assert.equal(j.state, 'succeeded', JSON.stringify(j.error));
    const lines = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${j.id}/logs`)).body.lines.map((l) => l.text).join('\n');
    assert.match(lines, /install plan \(root \/; host commands not executed: dry-run\)/);
    assert.match(lines, /kubeadm/);
  });

  it('refuses vpn-sync when it does not manage the VPN (a clear, final failure)', async () => {
    const j = await finished(await submit('vpn-sync', {}));
    assert.equal(j.state, 'failed');
    assert.equal(j.attempts, 1, 'not retried');
    assert.match(j.error!.message, /does not manage its VPN/);
  });

  it('status and certificate renew work beside the daemon', async () => {
    const s = await runNodeCli(['status', '--config', config, '--json']);
    assert.equal(s.code, 0, s.stderr);
    const st = JSON.parse(s.stdout);
    assert.equal(st.controlPlane.reachable, true);
    assert.equal(st.nodeId, 'n1');
    const before = new X509Certificate(readFileSync(join(dir, 'etc', 'node.crt'), 'utf8')).serialNumber;
    const r = await runNodeCli(['certificate', 'renew', '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(new X509Certificate(readFileSync(join(dir, 'etc', 'node.crt'), 'utf8')).serialNumber, before);
    const v = await runNodeCli(['version']);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
  });

  it('stops gracefully on SIGTERM (exit 0)', async () => {
    const started = Date.now();
    const code = await stopProcess(daemon!.proc, 'SIGTERM');
    assert.equal(code, 0, daemon!.output().slice(-2000));
    assert.ok(Date.now() - started < 10_000);
    assert.match(daemon!.output(), /stopped/);
    assert.doesNotMatch(daemon!.output(), /BEGIN .*PRIVATE KEY/);
    daemon = undefined;
  });

  it('preflight from the CLI: JSON report, exit code 1 exactly when a check failed', async () => {
    const r = await runNodeCli(['preflight', '--json', '--config', config]);
    const report = JSON.parse(r.stdout) as { checks: { name: string; status: string }[]; summary: { ok: boolean; fail: number } };
    assert.equal(r.code, report.summary.ok ? 0 : 1, r.stderr);
    assert.equal(report.summary.fail, report.checks.filter((c) => c.status === 'fail').length);
    assert.ok(report.checks.some((c) => c.name === 'control plane' && c.status === 'pass'));
    const table = await runNodeCli(['preflight', '--config', config]);
    assert.match(table.stdout, /passed, \d+ warnings, \d+ failed/);
  });

  it('install --dry-run --root prints the plan and writes nothing', async () => {
    const root = join(dir, 'root');
    const r = await runNodeCli(['install', '--dry-run', '--root', root, '--config', config]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1\. kernel modules/);
    assert.ok(!existsSync(root));
  });

  it('a missing config is a usage error (exit 2) naming the file', async () => {
    const r = await runNodeCli(['status', '--config', join(dir, 'nope.yaml')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no configuration at .*nope\.yaml/);
  });
});

describe('node agent: liveness as the CLI shows it (manual clock)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let daemon: Daemon | undefined;
  const clock = new ManualClock();

  before(async () => {
    t = await startTestControlPlane({}, { clock, reaper: false });
    await t.createCluster('lv1');
    dir = tempDir('tether-node-live-');
  });
  after(async () => {
    if (daemon) await killAndWait(daemon);
    await t.close();
    removeDir(t.dataDir);
    removeDir(dir);
  });

  const statusOf = async () => {
    const r = await runTetherCli(['agents', 'list', '--json', '--cluster', 'lv1'], { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(t.dataDir, 'ca.crt') });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as AgentView[]).find((a) => a.nid === 'n1')!;
  };

  it('healthy while it heartbeats, degraded from 10 s, offline from 30 s after it stopped', async () => {
    const config = join(dir, 'config.yaml');
    const token = await t.bootstrapToken('lv1', 'node', false);
    const r = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', config, '--name', 'n1', '--no-vpn', '--heartbeat-interval-ms', '200']);
    assert.equal(r.code, 0, r.stderr);
    daemon = startDaemon(config);
    await eventually(async () => (await statusOf()).lastHeartbeatAt !== null, 20_000, 'a first heartbeat');
    assert.equal((await statusOf()).status, 'healthy');
    assert.equal(await stopProcess(daemon.proc, 'SIGTERM'), 0);
    daemon = undefined;
    clock.advance(9_900);
    assert.equal((await statusOf()).status, 'healthy');
    clock.advance(200);
    assert.equal((await statusOf()).status, 'degraded');
    clock.advance(19_800);
    assert.equal((await statusOf()).status, 'degraded');
    clock.advance(200);
    const off = await statusOf();
    assert.equal(off.status, 'offline');
    assert.ok(off.secondsSinceHeartbeat! >= 30);
  });
});
