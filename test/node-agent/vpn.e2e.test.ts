/**
 * End to end with real WireGuard (wireguard-go where the kernel has no module): three node agents,
 * each in its own network namespace joined by veth to a bridge in the host namespace, register
 * against a real control plane listening on the bridge address, run their daemons, and build the
 * wg0 mesh. TCP works from node 1 to node 3 over wg0. Node 2 is revoked: after the automatic
 * resync the others no longer list its peer while node 1 ↔ node 3 keeps working (and keeps its
 * session). A user peer added through the admin API reaches node 1 over wg1 from a fourth
 * namespace using the handed-out client configuration. wg1 is hub and spoke: a second user, both
 * routing the whole wg1 network through node 1 (which forwards, as Kubernetes nodes do), cannot
 * reach the first through it: the node agent's nftables table drops it, and a sync restores the
 * table when it was removed by hand.
 *
 * Needs root, ip, wg and wireguard-go (test/node-agent/setup.sh installs them); otherwise it
 * prints why and skips. Everything it creates has a random suffix and is removed in after hooks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { randomAlnum } from '../../common/ids.ts';
import type { AgentView } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { isRoot, killAndWait, runNodeCli, runProcess, runTetherCli, startDaemon, track, type Daemon } from './support.ts';
import { which } from '../../node-agent/process/which.ts';

const sfx = randomAlnum(4);
const subnet = `10.250.${100 + Math.floor(Math.random() * 150)}`;
const BRIDGE = `ttbr${sfx}`;
const hostIp = `${subnet}.1`;
const nodes = [1, 2, 3].map((i) => ({
  i,
  nid: `n${i}`,
  ns: `tt${sfx}-${i}`,
  vethHost: `tv${sfx}h${i}`,
  vethNs: `tv${sfx}n${i}`,
  ip: `${subnet}.${10 + i}`,
  wg0: `w${sfx}a${i}`,
  wg1: `w${sfx}b${i}`,
  config: '',
  agentId: '',
  wg0Address: '',
  wg1Address: '',
  daemon: undefined as Daemon | undefined,
}));
const user = { ns: `tt${sfx}-u`, vethHost: `tv${sfx}hu`, vethNs: `tv${sfx}nu`, ip: `${subnet}.50`, wg: `w${sfx}u` };
const user2 = { ns: `tt${sfx}-v`, vethHost: `tv${sfx}hv`, vethNs: `tv${sfx}nv`, ip: `${subnet}.51`, wg: `w${sfx}v` };

async function sh(cmd: string, args: string[], check = true) {
  const r = await runProcess(cmd, args, { timeoutMs: 20_000 });
  if (check && r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r;
}
const inNs = (ns: string, cmd: string, args: string[], check = true) => sh('ip', ['netns', 'exec', ns, cmd, ...args], check);

async function addNamespace(ns: string, vethHost: string, vethNs: string, ip: string) {
  await sh('ip', ['netns', 'add', ns]);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['link', 'add', vethHost, 'type', 'veth', 'peer', 'name', vethNs, 'netns', ns]);
  await sh('ip', ['link', 'set', vethHost, 'master', BRIDGE, 'up']);
  await sh('ip', ['-n', ns, 'address', 'add', `${ip}/24`, 'dev', vethNs]);
  await sh('ip', ['-n', ns, 'link', 'set', vethNs, 'up']);
}

const peersOf = async (n: (typeof nodes)[number]) => (await inNs(n.ns, 'wg', ['show', n.wg0, 'peers'], false)).stdout.split('\n').filter(Boolean).sort();

/** A one-shot TCP exchange from `fromNs` to host:port, done by a tiny Node client inside the namespace. */
async function tcpRoundTrip(fromNs: string, host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect({host:process.argv[1],port:+process.argv[2],timeout:5000},()=>s.write('ping'));let d='';s.on('data',c=>d+=c);s.on('end',()=>{console.log(d);process.exit(0)});s.on('timeout',()=>{console.error('timeout');process.exit(3)});s.on('error',e=>{console.error(e.code||e.message);process.exit(2)})`;
  const r = await inNs(fromNs, process.execPath, ['-e', script, host, String(port)], false);
  if (r.code !== 0) throw new Error(`TCP ${fromNs} → ${host}:${port} failed: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

describe('node agent: VPN end to end (network namespaces, real WireGuard)', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let dir: string;
  const servers: Daemon[] = [];
  const created = { bridge: false, namespaces: [] as string[] };
  const timings: Record<string, number> = {};
  let tcpPort = 0;
  let alice: { address: string; port: number } | undefined;
  let t0 = Date.now();

  before(async function () {
    const missing = [!isRoot() && 'root', ...['ip', 'wg', 'wireguard-go', 'nft'].filter((b) => !which(b))].filter(Boolean);
    if (missing.length) {
      console.log(`      skipped: needs ${missing.join(', ')} (run test/node-agent/setup.sh as root)`);
      this.skip();
    }
    t0 = Date.now();
    dir = tempDir('tether-vpn-e2e-');
    await sh('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    created.bridge = true;
    await sh('ip', ['address', 'add', `${hostIp}/24`, 'dev', BRIDGE]);
    await sh('ip', ['link', 'set', BRIDGE, 'up']);
    for (const n of nodes) {
      created.namespaces.push(n.ns);
      await addNamespace(n.ns, n.vethHost, n.vethNs, n.ip);
    }
    t = await startTestControlPlane({ host: hostIp, sans: [hostIp] });
    await t.createCluster('mesh');
    timings.setupMs = Date.now() - t0;
  });

  after(async function () {
    this.timeout(60_000);
    const stops = [...nodes.map((n) => n.daemon), ...servers].filter((d): d is Daemon => d !== undefined);
    await Promise.all(stops.map(killAndWait));
    // Processes still inside our namespaces (wireguard-go daemons, test servers) were all started by this test.
    for (const ns of [...created.namespaces]) {
      const pids = (await sh('ip', ['netns', 'pids', ns], false)).stdout.split('\n').filter((p) => /^\d+$/.test(p));
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await sh('ip', ['netns', 'del', ns], false);
    }
    if (created.bridge) await sh('ip', ['link', 'del', BRIDGE], false);
    for (const name of [...nodes.flatMap((n) => [n.wg0, n.wg1]), user.wg, user2.wg]) rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
    if (t) {
      await t.close();
      removeDir(t.dataDir);
    }
    if (dir) removeDir(dir);
    if (Object.keys(timings).length) console.log(`      timings: ${JSON.stringify(timings)}`);
    await new Promise((r) => setTimeout(r, 100)); // let closed handles (child pipes, the server) finish closing
  });

  it('three nodes register from their namespaces and build the wg0 mesh', async () => {
    const started = Date.now();
    for (const n of nodes) {
      n.config = join(dir, n.nid, 'config.yaml');
      const token = await t.bootstrapToken('mesh', 'node', false);
      const r = await runNodeCli(
        ['register', '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', n.config, '--name', n.nid, '--wg0-interface', n.wg0, '--wg1-interface', n.wg1, '--heartbeat-interval-ms', '1000'],
        { netns: n.ns, env: { TETHER_BOOTSTRAP_TOKEN: token } },
      );
      assert.equal(r.code, 0, r.stderr);
    }
    for (const n of nodes) n.daemon = startDaemon(n.config, { netns: n.ns });
    // Every node ends with the two others as wg0 peers (their own syncs at start, then the vpn-syncs queued for them).
    await eventually(async () => (await Promise.all(nodes.map(peersOf))).every((p) => p.length === 2), 60_000, 'a full mesh on every node');
    const view = (await t.admin.request<{ nodes: { nid: string; agentId: string; wg0Address: string; wg1Address: string; endpoint: string }[] }>('GET', '/v1/clusters/mesh/vpn')).body;
    for (const n of nodes) {
      const v = view.nodes.find((x) => x.nid === n.nid)!;
      n.agentId = v.agentId;
      n.wg0Address = v.wg0Address;
      n.wg1Address = v.wg1Address;
      assert.equal(v.endpoint, `${n.ip}:51820`, 'the endpoint is the namespace address toward the control plane');
    }
    assert.deepEqual(nodes.map((n) => n.wg0Address), ['172.24.0.1', '172.24.0.2', '172.24.0.3']);
    // The private key stays on the node: 0600 file, never in the control plane's view or the daemon's output.
    const { statSync, readFileSync } = await import('node:fs');
    const keyFile = join(dir, 'n1', 'state', 'wireguard', 'wg0.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const priv = readFileSync(keyFile, 'utf8').trim();
    assert.ok(!JSON.stringify(view).includes(priv));
    assert.ok(!nodes[0]!.daemon!.output().includes(priv));
    timings.meshMs = Date.now() - started;
  });

  it('TCP from node 1 to node 3 over wg0', async () => {
    const n3 = nodes[2]!;
    const port = 7000 + Math.floor(Math.random() * 1000);
    const server = `require('net').createServer(s=>{s.once('data',d=>s.end('pong:'+d))}).listen(+process.argv[1],process.argv[2],()=>console.log('listening'))`;
    const d = startProcessInNs(n3.ns, [process.execPath, '-e', server, String(port), n3.wg0Address]);
    servers.push(d);
    await eventually(() => d.output().includes('listening'), 10_000, 'the TCP server in node 3');
    const started = Date.now();
    assert.equal(await eventually(() => tcpRoundTrip(nodes[0]!.ns, n3.wg0Address, port), 20_000, 'TCP over wg0'), 'pong:ping');
    timings.firstTcpMs = Date.now() - started;
    tcpPort = port;
  });

  it('heartbeats carry the VPN peer state (public keys only)', async () => {
    const a = await eventually(async () => {
      const list = (await t.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents?cluster=mesh')).body.agents;
      const n1 = list.find((x) => x.nid === 'n1');
      const wg0 = n1?.vpn?.wg0 as { up?: boolean; peers?: { latestHandshake: number | null }[] } | undefined;
      return wg0?.up && wg0.peers?.length === 2 && wg0.peers.some((p) => p.latestHandshake !== null) ? n1 : undefined;
    }, 20_000, 'VPN state in a heartbeat');
    assert.equal((a.vpn!.wg0 as { interface: string }).interface, nodes[0]!.wg0);
  });

  it('node 2 revoked: the others drop its peer after the automatic resync; 1 ↔ 3 keeps working and keeps its session', async () => {
    const [n1, n2, n3] = nodes as [(typeof nodes)[number], (typeof nodes)[number], (typeof nodes)[number]];
    const n2Key = (await inNs(n2.ns, 'wg', ['show', n2.wg0, 'public-key'])).stdout.trim();
    const n3Key = (await inNs(n3.ns, 'wg', ['show', n3.wg0, 'public-key'])).stdout.trim();
    const handshake = async () => Number((await inNs(n1.ns, 'wg', ['show', n1.wg0, 'latest-handshakes'])).stdout.split('\n').find((l) => l.startsWith(n3Key))?.split('\t')[1] ?? 0);
    const before = await handshake();
    assert.ok(before > 0, 'node 1 and node 3 have a session');
    const started = Date.now();
    const r = await runTetherCli(['agents', 'revoke', n2.agentId], { TETHER_URL: t.url, TETHER_API_KEY: t.adminToken, TETHER_CA_FILE: join(t.dataDir, 'ca.crt') });
    assert.equal(r.code, 0, r.stderr);
    await eventually(async () => {
      const [p1, p3] = await Promise.all([peersOf(n1), peersOf(n3)]);
      return p1.length === 1 && p3.length === 1 && !p1.includes(n2Key) && !p3.includes(n2Key);
    }, 60_000, 'node 2 gone from the peers of nodes 1 and 3');
    timings.revokeResyncMs = Date.now() - started;
    assert.deepEqual(await peersOf(n1), [n3Key]);
    // wg syncconf kept the unchanged peer: its session (handshake time) was not reset.
    assert.ok((await handshake()) >= before, 'the 1 ↔ 3 session survived the resync');
    assert.equal(await tcpRoundTrip(n1.ns, n3.wg0Address, tcpPort), 'pong:ping');
    // And node 2 can no longer reach node 3 over the mesh.
    await assert.rejects(tcpRoundTrip(n2.ns, n3.wg0Address, tcpPort));
  });

  it('a user peer (admin API) reaches node 1 over wg1 with the handed-out client configuration', async () => {
    const n1 = nodes[0]!;
    created.namespaces.push(user.ns);
    await addNamespace(user.ns, user.vethHost, user.vethNs, user.ip);
    const res = await t.admin.request<{ clientConfig: string; user: { address: string } }>('POST', '/v1/clusters/mesh/vpn/users', { name: 'alice' });
    const conf = res.body.clientConfig;
    assert.match(conf, new RegExp(`Endpoint = ${n1.ip.replace(/\./g, '\\.')}:51821`));
    await eventually(async () => (await inNs(n1.ns, 'wg', ['show', n1.wg1, 'peers'])).stdout.trim().split('\n').filter(Boolean).length === 1, 60_000, 'node 1 accepting the user on wg1');
    // The user's side: wireguard-go in the fourth namespace, configured from the client config
    // (wg(8) takes it without wg-quick's Address line, which becomes an `ip address`).
    const clientDir = join(dir, 'user');
    mkdirSync(clientDir, { recursive: true });
    const wgConf = join(clientDir, 'wg.conf');
    writeFileSync(wgConf, conf.split('\n').filter((l) => !l.startsWith('Address')).join('\n'), { mode: 0o600 });
    await sh('ip', ['netns', 'exec', user.ns, 'env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wireguard-go', user.wg]);
    await inNs(user.ns, 'wg', ['setconf', user.wg, wgConf]);
    await sh('ip', ['-n', user.ns, 'address', 'add', `${res.body.user.address}/32`, 'dev', user.wg]);
    await sh('ip', ['-n', user.ns, 'link', 'set', user.wg, 'up']);
    await sh('ip', ['-n', user.ns, 'route', 'add', '172.24.200.0/21', 'dev', user.wg]);
    const port = tcpPort + 1;
    const server = `require('net').createServer(s=>{s.once('data',d=>s.end('hello:'+d))}).listen(+process.argv[1],process.argv[2],()=>console.log('listening'))`;
    const d = startProcessInNs(n1.ns, [process.execPath, '-e', server, String(port), n1.wg1Address]);
    servers.push(d);
    await eventually(() => d.output().includes('listening'), 10_000, 'the TCP server on node 1 wg1');
    assert.equal(await eventually(() => tcpRoundTrip(user.ns, n1.wg1Address, port), 20_000, 'TCP over wg1'), 'hello:ping');
    alice = { address: res.body.user.address, port };
  });

  it('wg1 is hub and spoke: two users routing through a forwarding node cannot reach each other; a sync restores removed rules', async () => {
    const n1 = nodes[0]!;
    // Kubernetes nodes forward (the install step sets ip_forward); so does node 1 here.
    await inNs(n1.ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    assert.match((await inNs(n1.ns, 'nft', ['list', 'table', 'inet', 'tether_vpn'])).stdout, new RegExp(`iifname "${n1.wg1}" oifname "${n1.wg1}"`));
    created.namespaces.push(user2.ns);
    await addNamespace(user2.ns, user2.vethHost, user2.vethNs, user2.ip);
    const res = await t.admin.request<{ clientConfig: string; user: { address: string } }>('POST', '/v1/clusters/mesh/vpn/users', { name: 'bob' });
    await eventually(async () => (await inNs(n1.ns, 'wg', ['show', n1.wg1, 'peers'])).stdout.trim().split('\n').filter(Boolean).length === 2, 60_000, 'node 1 accepting both users on wg1');
    const wgConf = join(dir, 'user', 'bob.conf');
    writeFileSync(wgConf, res.body.clientConfig.split('\n').filter((l) => !l.startsWith('Address')).join('\n'), { mode: 0o600 });
    await sh('ip', ['netns', 'exec', user2.ns, 'env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wireguard-go', user2.wg]);
    await inNs(user2.ns, 'wg', ['setconf', user2.wg, wgConf]);
    await sh('ip', ['-n', user2.ns, 'address', 'add', `${res.body.user.address}/32`, 'dev', user2.wg]);
    await sh('ip', ['-n', user2.ns, 'link', 'set', user2.wg, 'up']);
    await sh('ip', ['-n', user2.ns, 'route', 'add', '172.24.200.0/21', 'dev', user2.wg]);
    // Both users hand the whole wg1 network to node 1's peer: each other's address is routed through node 1.
    const n1Key = (await inNs(n1.ns, 'wg', ['show', n1.wg1, 'public-key'])).stdout.trim();
    await inNs(user.ns, 'wg', ['set', user.wg, 'peer', n1Key, 'allowed-ips', '172.24.200.0/21']);
    await inNs(user2.ns, 'wg', ['set', user2.wg, 'peer', n1Key, 'allowed-ips', '172.24.200.0/21']);
    const port = alice!.port + 1;
    const server = `require('net').createServer(s=>{s.once('data',d=>s.end('bob:'+d))}).listen(+process.argv[1],process.argv[2],()=>console.log('listening'))`;
    const d = startProcessInNs(user2.ns, [process.execPath, '-e', server, String(port), res.body.user.address]);
    servers.push(d);
    await eventually(() => d.output().includes('listening'), 10_000, 'the TCP server of user 2');
    // Both users still reach the node ...
    assert.equal(await eventually(() => tcpRoundTrip(user2.ns, n1.wg1Address, alice!.port), 20_000, 'user 2 to node 1'), 'hello:ping');
    assert.equal(await tcpRoundTrip(user.ns, n1.wg1Address, alice!.port), 'hello:ping');
    // ... never each other.
    await assert.rejects(tcpRoundTrip(user.ns, res.body.user.address, port), /timeout|EHOSTUNREACH|ECONNREFUSED/);
    // The rules are what stops it: without the table node 1 forwards between the users ...
    await inNs(n1.ns, 'nft', ['delete', 'table', 'inet', 'tether_vpn']);
    assert.equal(await eventually(() => tcpRoundTrip(user.ns, res.body.user.address, port), 20_000, 'user to user without the rules'), 'bob:ping');
    // ... and the next sync puts the table back.
    const job = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'mesh', node: n1.nid }, type: 'vpn-sync', spec: {} })).body.id;
    const done = await eventually(async () => {
      const j = (await t.admin.request<{ state: string; outputs?: { firewall?: { changed: boolean } } }>('GET', `/v1/commands/${job}`)).body;
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
    }, 60_000, 'the vpn-sync');
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    await assert.rejects(tcpRoundTrip(user.ns, res.body.user.address, port), /timeout|EHOSTUNREACH|ECONNREFUSED/);
    timings.totalMs = Date.now() - t0;
  });
});

function startProcessInNs(ns: string, argv: string[]): Daemon {
  return track(spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }));
}
