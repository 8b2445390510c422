/** Preflight decisions from made-up facts: thresholds, module evidence, ports, time sync, exit codes. */
import assert from 'node:assert/strict';
import { evaluate, exitCodeFor, checkKernel, checkModule, checkPort, checkTimeSync, checkSwap, checkCgroup, checkDisk, checkMemory, requiredPorts, GiB, type HostFacts, type ModuleFacts } from '../../node-agent/preflight/preflight.checks.ts';
import { cgroupMode, parseChronyTracking, parseOsRelease, parseSwaps, tryTcp, tryUdp } from '../../node-agent/preflight/preflight.facts.ts';
import { renderReport } from '../../node-agent/preflight/preflight.report.ts';

const modules = (m: Partial<ModuleFacts> = {}): ModuleFacts => ({ loaded: [], builtin: [], loadable: [], sysModule: [], bridgeNetfilterSysctl: false, ...m });

const goodHost = (): HostFacts => ({
  os: { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  kernelRelease: '6.1.0-18-amd64',
  arch: 'x64',
  cgroup: { mode: 'unified', detail: 'cgroup2 mounted at /sys/fs/cgroup' },
  swapDevices: [],
  modules: modules({ loaded: ['overlay', 'br_netfilter', 'wireguard'] }),
  binaries: { 'wireguard-go': null },
  ports: requiredPorts(true, { wg0: 51820, wg1: 51821 }).map((p) => ({ ...p, free: true })),
  disk: { path: '/', freeBytes: 50 * GiB, totalBytes: 100 * GiB },
  memoryTotalBytes: 8 * GiB,
  cpus: 4,
  timeSync: { ntpSynchronized: true, chrony: null, daemons: ['systemd-timesyn'], controlPlaneSkewMs: 120 },
  controlPlane: { url: 'https://cp:8443', reachable: true, detail: 'TLS verified' },
});

describe('node agent: preflight checks (pure)', () => {
  it('passes a good host and exits 0', () => {
    const r = evaluate(goodHost(), { controlPlaneNode: true });
    assert.deepEqual(r.checks.filter((c) => c.status !== 'pass'), []);
    assert.equal(exitCodeFor(r), 0);
    assert.match(renderReport(r), /0 failed: ready/);
  });

  it('asks control-plane nodes for 6443, etcd and the WireGuard ports; workers for the kubelet and WireGuard only', () => {
    assert.deepEqual(requiredPorts(true, { wg0: 1, wg1: 2 }).map((p) => `${p.port}/${p.proto}`), ['6443/tcp', '10250/tcp', '2379/tcp', '2380/tcp', '10257/tcp', '10259/tcp', '1/udp', '2/udp']);
    assert.deepEqual(requiredPorts(false, { wg0: 1, wg1: 2 }).map((p) => `${p.port}/${p.proto}`), ['10250/tcp', '1/udp', '2/udp']);
  });

  it('warnings keep exit code 0, any failure makes it 1', () => {
    const f = goodHost();
    f.timeSync = { ntpSynchronized: null, chrony: null, daemons: [], controlPlaneSkewMs: null };
    const warned = evaluate(f, { controlPlaneNode: false });
    assert.equal(warned.summary.warn, 1);
    assert.equal(exitCodeFor(warned), 0);
    f.swapDevices = ['/swapfile'];
    const failed = evaluate(f, { controlPlaneNode: false });
    assert.equal(failed.summary.fail, 1);
    assert.equal(exitCodeFor(failed), 1);
    assert.match(renderReport(failed), /swap\s+FAIL/);
  });

  it('kernel: fail below 4.19, warn below 5.4', () => {
    assert.equal(checkKernel('4.14.0').status, 'fail');
    assert.equal(checkKernel('4.19.2-x').status, 'warn');
    assert.equal(checkKernel('5.4.0').status, 'pass');
    assert.equal(checkKernel('weird').status, 'warn');
  });

  it('cgroup: only the unified hierarchy passes', () => {
    assert.equal(checkCgroup({ mode: 'unified', detail: '' }).status, 'pass');
    assert.equal(checkCgroup({ mode: 'hybrid', detail: '' }).status, 'fail');
    assert.equal(checkCgroup({ mode: 'none', detail: '' }).status, 'fail');
    assert.equal(cgroupMode('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n').mode, 'unified');
    assert.equal(cgroupMode('tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n').mode, 'hybrid');
    assert.equal(cgroupMode('tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n').mode, 'legacy');
    assert.equal(cgroupMode('').mode, 'none');
  });

  it('swap: parsed from /proc/swaps, any device fails', () => {
    assert.deepEqual(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n'), []);
    assert.deepEqual(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 1 0 -2\n'), ['/dev/sda2']);
    assert.equal(checkSwap(['/dev/sda2']).status, 'fail');
    assert.equal(checkSwap(null).status, 'warn');
  });

  it('modules: loaded, built in, loadable, or absent; wireguard absent is a warning when wireguard-go exists', () => {
    assert.equal(checkModule('overlay', modules({ loaded: ['overlay'] }), {}).status, 'pass');
    assert.match(checkModule('overlay', modules({ builtin: ['overlay'] }), {}).detail, /builtin/);
    assert.match(checkModule('overlay', modules({ loadable: ['overlay'] }), {}).detail, /loadable/);
    assert.equal(checkModule('br_netfilter', modules({ bridgeNetfilterSysctl: true }), {}).status, 'pass');
    assert.equal(checkModule('overlay', modules(), {}).status, 'fail');
    assert.equal(checkModule('wireguard', modules(), { 'wireguard-go': '/usr/bin/wireguard-go' }).status, 'warn');
    assert.equal(checkModule('wireguard', modules(), { 'wireguard-go': null }).status, 'fail');
    // No /proc/modules (no module support): /sys/module means built in.
    assert.match(checkModule('overlay', modules({ loaded: null, sysModule: ['overlay'] }), {}).detail, /builtin/);
  });

  it('ports: in use fails unless our own WireGuard interface holds it', () => {
    assert.equal(checkPort({ proto: 'tcp', port: 6443, purpose: 'api', free: false, error: 'EADDRINUSE' }).status, 'fail');
    assert.equal(checkPort({ proto: 'udp', port: 51820, purpose: 'wg', free: false, error: 'EADDRINUSE', ownInterface: 'wg0' }).status, 'pass');
  });

  it('ports: a real bind tells a busy port from a free one', async () => {
    const net = await import('node:net');
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '0.0.0.0', () => r()));
    const port = (s.address() as { port: number }).port;
    assert.equal(await tryTcp(port), 'EADDRINUSE');
    s.close();
    assert.equal(await tryUdp(port), undefined);
  });

  it('disk and memory minimums depend on the role', () => {
    assert.equal(checkDisk({ path: '/', freeBytes: 5 * GiB, totalBytes: 10 * GiB }).status, 'fail');
    assert.equal(checkDisk({ path: '/', freeBytes: 15 * GiB, totalBytes: 30 * GiB }).status, 'warn');
    assert.equal(checkMemory(1.5 * GiB, true).status, 'fail');
    assert.equal(checkMemory(1.5 * GiB, false).status, 'warn');
    assert.equal(checkMemory(16 * GiB, true).status, 'pass');
  });

  it('time sync: NTP or chrony pass; a large skew from the control plane fails', () => {
    const t = { ntpSynchronized: null, chrony: null, daemons: [] as string[], controlPlaneSkewMs: null as number | null };
    assert.equal(checkTimeSync({ ...t, ntpSynchronized: true }).status, 'pass');
    assert.equal(checkTimeSync({ ...t, chrony: parseChronyTracking('Reference ID    : C0A80001 (ntp)\nSystem time     : 0.000012 seconds slow of NTP time\nLeap status     : Normal\n') }).status, 'pass');
    assert.equal(checkTimeSync({ ...t, chrony: parseChronyTracking('Reference ID    : 00000000 ()\nLeap status     : Not synchronised\n') }).status, 'warn');
    assert.equal(checkTimeSync({ ...t, daemons: ['chronyd'] }).status, 'warn');
    assert.equal(checkTimeSync({ ...t, ntpSynchronized: true, controlPlaneSkewMs: 5000 }).status, 'warn');
    assert.equal(checkTimeSync({ ...t, ntpSynchronized: true, controlPlaneSkewMs: -120_000 }).status, 'fail');
  });

  it('os-release parsing', () => {
    assert.deepEqual(parseOsRelease('ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04 LTS"\n'), { ID: 'ubuntu', VERSION_ID: '24.04', PRETTY_NAME: 'Ubuntu 24.04 LTS' });
  });
});
