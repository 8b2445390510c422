/**
 * The heartbeat's VPN state read without processes, against real WireGuard: two network
 * namespaces joined by veth, a wireguard-go interface in each (their UAPI sockets in
 * /var/run/wireguard), peers set with `wg set`, a handshake and traffic between them. What the
 * daemon sends with every heartbeat (`collectVpnState(…, { forHeartbeat: true })`, as
 * node-agent/daemon/agent.ts calls it) and what `tether-node status` shows must equal what
 * `wg show <if> dump` shows of the same interfaces, while the runner the daemon would start
 * processes with is called zero times over many heartbeats. A missing interface and a dead
 * wireguard-go (stale socket) read as down, also without a process.
 *
 * Needs root, ip, wg and wireguard-go (test/node-agent/setup.sh installs them); otherwise it
 * prints why and skips. Everything it creates has a random suffix and is removed in after hooks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomAlnum } from '../../common/ids.ts';
import { removeDir, tempDir } from '../support/control-plane.ts';
import { isRoot, runProcess } from './support.ts';
import { which } from '../../node-agent/process/which.ts';
import { collectVpnState } from '../../node-agent/vpn/vpn.state.ts';
import { parseWgDump } from '../../node-agent/vpn/wireguard.render.ts';
import { runCommand, type Runner } from '../../node-agent/process/run.ts';
import type { NetworkConfig } from '../../node-agent/config/node.config.ts';

const sfx = randomAlnum(4);
const subnet = `10.251.${100 + Math.floor(Math.random() * 150)}`;
const A = { ns: `tu${sfx}a`, veth: `tu${sfx}va`, ip: `${subnet}.1`, wg0: `u${sfx}a0`, wg1: `u${sfx}a1`, port0: 52000 + Math.floor(Math.random() * 1000) };
const B = { ns: `tu${sfx}b`, veth: `tu${sfx}vb`, ip: `${subnet}.2`, wg0: `u${sfx}b0`, port0: A.port0 + 1000 };
const MIB = 1024 * 1024;

async function sh(cmd: string, args: string[], check = true) {
  const r = await runProcess(cmd, args, { timeoutMs: 20_000 });
  if (check && r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r;
}
const inNs = (ns: string, cmd: string, args: string[], check = true) => sh('ip', ['netns', 'exec', ns, cmd, ...args], check);

/** The heartbeat form built from `wg show <if> dump`, as the daemon sent it before it read the socket. */
async function fromDump(ns: string, ifname: string) {
  const d = parseWgDump((await inNs(ns, 'wg', ['show', ifname, 'dump'])).stdout)!;
  return {
    interface: ifname,
    up: true,
    publicKey: d.publicKey,
    listenPort: d.listenPort,
    peers: [...d.peers]
      .sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1))
      .map((p) => ({ publicKey: p.publicKey, endpoint: p.endpoint, allowedIps: [...p.allowedIps].sort(), latestHandshake: p.latestHandshake > 0 ? p.latestHandshake : null, rxMiB: Math.floor(p.rxBytes / MIB), txMiB: Math.floor(p.txBytes / MIB) })),
  };
}

describe('node agent: VPN state over the WireGuard UAPI socket (real wireguard-go, no processes)', function () {
  this.timeout(120_000);
  let dir: string;
  const made: string[] = [];
  const calls: string[][] = [];
  /** The daemon's runner, counting: the state must not use it while nothing changes. */
  const counting: Runner = (file, args, o) => {
    calls.push([file, ...args]);
    return runCommand(file, args, o);
  };
  const net = (wg1: string): NetworkConfig => ({ manageVpn: true, wg0: { interface: A.wg0, listenPort: A.port0 }, wg1: { interface: wg1, listenPort: A.port0 + 1 }, wireguardGo: 'wireguard-go', resyncSeconds: 0 }) as NetworkConfig;

  before(async function () {
    const missing = ['ip', 'wg', 'wireguard-go'].filter((b) => !which(b));
    if (!isRoot() || missing.length) {
      console.log(`      skipped: needs root and ${missing.join(', ') || 'nothing else'} (bash test/node-agent/setup.sh)`);
      this.skip();
    }
    dir = tempDir('tether-uapi-');
    for (const n of [A, B]) {
      await sh('ip', ['netns', 'add', n.ns]);
      made.push(n.ns);
      await sh('ip', ['-n', n.ns, 'link', 'set', 'lo', 'up']);
    }
    await sh('ip', ['link', 'add', A.veth, 'netns', A.ns, 'type', 'veth', 'peer', 'name', B.veth, 'netns', B.ns]);
    for (const n of [A, B]) {
      await sh('ip', ['-n', n.ns, 'address', 'add', `${n.ip}/24`, 'dev', n.veth]);
      await sh('ip', ['-n', n.ns, 'link', 'set', n.veth, 'up']);
    }
    const key = async (name: string) => {
      const k = (await sh('wg', ['genkey'])).stdout.trim();
      const path = join(dir, name);
      writeFileSync(path, `${k}\n`, { mode: 0o600 });
      return { path, pub: (await runCommand('wg', ['pubkey'], { input: `${k}\n` })).stdout.trim() };
    };
    // The agent's key layout: <stateDir>/wireguard/wg0.key.
    mkdirSync(join(dir, 'wireguard'), { mode: 0o700 });
    const ka = await key('wireguard/wg0.key');
    const kb = await key('b.key');
    const psk = join(dir, 'psk');
    writeFileSync(psk, `${(await sh('wg', ['genpsk'])).stdout.trim()}\n`, { mode: 0o600 });
    for (const [n, ifs] of [[A, [A.wg0, A.wg1]], [B, [B.wg0]]] as const) {
      for (const i of ifs) await sh('ip', ['netns', 'exec', n.ns, 'env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wireguard-go', i]);
    }
    const other = (await runCommand('wg', ['pubkey'], { input: `${(await sh('wg', ['genkey'])).stdout.trim()}\n` })).stdout.trim();
    await inNs(A.ns, 'wg', ['set', A.wg0, 'private-key', ka.path, 'listen-port', String(A.port0), 'peer', kb.pub, 'endpoint', `${B.ip}:${B.port0}`, 'allowed-ips', '10.99.0.2/32,fd99::2/128', 'preshared-key', psk, 'persistent-keepalive', '25', 'peer', other, 'endpoint', '[fd00::5]:1234']);
    await inNs(B.ns, 'wg', ['set', B.wg0, 'private-key', kb.path, 'listen-port', String(B.port0), 'peer', ka.pub, 'endpoint', `${A.ip}:${A.port0}`, 'allowed-ips', '10.99.0.1/32', 'preshared-key', psk]);
    for (const [n, addr] of [[A, '10.99.0.1'], [B, '10.99.0.2']] as const) {
      await sh('ip', ['-n', n.ns, 'address', 'add', `${addr}/24`, 'dev', n.wg0]);
      await sh('ip', ['-n', n.ns, 'link', 'set', n.wg0, 'up']);
    }
    // A handshake and traffic both ways (UDP through the tunnel; no listener needed).
    await inNs(A.ns, 'bash', ['-c', 'for i in 1 2 3; do echo hi > /dev/udp/10.99.0.2/9; sleep 0.3; done']);
    await inNs(B.ns, 'bash', ['-c', 'for i in $(seq 40); do head -c 1200 /dev/zero > /dev/udp/10.99.0.1/9; done']);
    // Until A has seen the handshake (a loaded machine may take a moment).
    for (let i = 0; i < 50; i++) {
      const hs = (await inNs(A.ns, 'wg', ['show', A.wg0, 'latest-handshakes'])).stdout;
      if (/\t[1-9]\d*$/m.test(hs)) break;
      await inNs(A.ns, 'bash', ['-c', 'echo hi > /dev/udp/10.99.0.2/9']);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  after(async () => {
    for (const ns of made) {
      const pids = (await runProcess('ip', ['netns', 'pids', ns])).stdout.split('\n').filter((p) => /^\d+$/.test(p));
      for (const p of pids) process.kill(Number(p), 'SIGKILL');
      await runProcess('ip', ['netns', 'del', ns]);
    }
    if (dir) removeDir(dir);
  });

  it('equals `wg show dump` for the heartbeat, with a handshake and traffic, and starts no process', async () => {
    const want = await fromDump(A.ns, A.wg0);
    assert.ok(want.peers.some((p) => p.latestHandshake !== null), 'the test needs a handshake to compare');
    calls.length = 0;
    const got = await collectVpnState(net(A.wg1), counting, { forHeartbeat: true, keyDir: join(dir, 'wireguard') });
    assert.deepEqual(got.wg0, want);
    // No key file for wg1 (so no public key to report) and no peers; wireguard-go picked a random port.
    const wg1 = got.wg1 as { up: boolean; publicKey: string | null; listenPort: number; peers: unknown[] };
    assert.deepEqual([wg1.up, wg1.publicKey, wg1.peers], [true, null, []]);
    assert.equal(wg1.listenPort, Number((await inNs(A.ns, 'wg', ['show', A.wg1, 'listen-port'])).stdout.trim()));
    for (let i = 0; i < 20; i++) await collectVpnState(net(A.wg1), counting, { forHeartbeat: true, keyDir: join(dir, 'wireguard') });
    assert.deepEqual(calls, [], 'processes started while reading the VPN state');
  });

  it('equals `wg show dump` in the status form (ages and byte counts)', async () => {
    const d = parseWgDump((await inNs(A.ns, 'wg', ['show', A.wg0, 'dump'])).stdout)!;
    const now = Date.now() / 1000;
    const got = (await collectVpnState(net(A.wg1), counting, { keyDir: join(dir, 'wireguard'), nowSeconds: now })).wg0 as { publicKey: string; peers: { publicKey: string; allowedIps: string[]; rxBytes: number; txBytes: number; handshakeAgeSeconds: number | null }[] };
    assert.equal(got.publicKey, d.publicKey);
    const byKey = new Map(d.peers.map((p) => [p.publicKey, p]));
    assert.equal(got.peers.length, d.peers.length);
    for (const p of got.peers) {
      const w = byKey.get(p.publicKey)!;
      assert.deepEqual([...p.allowedIps].sort(), [...w.allowedIps].sort());
      // Counters only grow (keepalives may pass between the two reads).
      assert.ok(p.rxBytes >= w.rxBytes && p.txBytes >= w.txBytes);
      assert.equal(p.handshakeAgeSeconds, w.latestHandshake > 0 ? Math.max(0, Math.round(now - w.latestHandshake)) : null);
    }
  });

  it('reads a missing interface and a dead wireguard-go (stale socket) as down, without a process', async () => {
    calls.length = 0;
    const missing = await collectVpnState(net(`u${sfx}zz`), counting, { forHeartbeat: true });
    assert.deepEqual(missing.wg1, { interface: `u${sfx}zz`, up: false });
    // Kill B's wireguard-go: its socket file stays behind, nothing answers on it.
    const pids = (await runProcess('ip', ['netns', 'pids', B.ns])).stdout.split('\n').filter((p) => /^\d+$/.test(p));
    for (const p of pids) process.kill(Number(p), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const dead = await collectVpnState({ ...net(A.wg1), wg0: { interface: B.wg0, listenPort: B.port0 } } as NetworkConfig, counting, { forHeartbeat: true });
    assert.deepEqual(dead.wg0, { interface: B.wg0, up: false });
    assert.deepEqual(calls, []);
  });
});
