/**
 * Measures the idle node agent daemon: RSS and CPU over a window (default 60 s; env
 * TETHER_IDLE_SECONDS), heartbeats every 5 s with host metrics and VPN state from real WireGuard.
 * The daemon is what is deployed (bin/tether-node agent: the bundle with the daemon's flags) and
 * runs in its own network namespace (veth to the host, control plane in-process on the host side).
 * Run as root: `node test/node-agent/idle-footprint.ts`. Prints one JSON line; `rssSplitMiB` is the
 * last RSS split into anonymous memory (heap, malloc) and file-backed pages (mostly the node binary,
 * shared with every other Node process).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomAlnum } from '../../common/ids.ts';
import { eventually, removeDir, startTestControlPlane, tempDir } from '../support/control-plane.ts';
import { killAndWait, runNodeCli, runProcess, startDaemon } from './support.ts';

const seconds = Number(process.env.TETHER_IDLE_SECONDS ?? 60);
const sfx = randomAlnum(4);
const ns = `ti${sfx}`;
const [vh, vn] = [`ti${sfx}h`, `ti${sfx}n`];
const [hostIp, nsIp] = ['10.251.77.1', '10.251.77.2'];
const wg = [`wi${sfx}a`, `wi${sfx}b`];
const sh = async (args: string[]) => {
  const r = await runProcess('ip', args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};

const clkTck = 100;
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};
const statusKb = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const rssKb = (pid: number) => statusKb(pid, 'VmRSS');

const dir = tempDir('tether-idle-');
let t: Awaited<ReturnType<typeof startTestControlPlane>> | undefined;
let daemon: ReturnType<typeof startDaemon> | undefined;
try {
  await sh(['netns', 'add', ns]);
  await sh(['link', 'add', vh, 'type', 'veth', 'peer', 'name', vn, 'netns', ns]);
  await sh(['address', 'add', `${hostIp}/24`, 'dev', vh]);
  await sh(['link', 'set', vh, 'up']);
  await sh(['-n', ns, 'address', 'add', `${nsIp}/24`, 'dev', vn]);
  await sh(['-n', ns, 'link', 'set', vn, 'up']);
  await sh(['-n', ns, 'link', 'set', 'lo', 'up']);
  t = await startTestControlPlane({ host: hostIp, sans: [hostIp] });
  await t.createCluster('idle');
  const config = join(dir, 'config.yaml');
  const token = await t.bootstrapToken('idle', 'node', false);
  const r = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', config, '--name', 'idle1', '--wg0-interface', wg[0]!, '--wg1-interface', wg[1]!], { netns: ns });
  if (r.code !== 0) throw new Error(r.stderr);
  daemon = startDaemon(config, { netns: ns, env: { TETHER_LOG_LEVEL: 'warn' } });
  const pid = daemon.proc.pid!;
  await eventually(async () => (await t!.admin.request<{ nodes: { registered: boolean }[] }>('GET', '/v1/clusters/idle/vpn')).body.nodes[0]?.registered, 30_000, 'the VPN sync');
  await new Promise((res) => setTimeout(res, 5000)); // settle: start-up work done
  const c0 = cpuTicks(pid);
  const start = Date.now();
  const rss: number[] = [];
  while (Date.now() - start < seconds * 1000) {
    rss.push(rssKb(pid));
    await new Promise((res) => setTimeout(res, 1000));
  }
  const cpuSeconds = (cpuTicks(pid) - c0) / clkTck;
  const rssSplitMiB = { anonymous: +(statusKb(pid, 'RssAnon') / 1024).toFixed(1), file: +(statusKb(pid, 'RssFile') / 1024).toFixed(1) };
  const wall = (Date.now() - start) / 1000;
  const hb = (await t.admin.request<{ agents: { nid: string; metrics: { rssBytes: number } }[] }>('GET', '/v1/agents?cluster=idle')).body.agents[0]!;
  console.log(JSON.stringify({
    windowSeconds: Math.round(wall),
    rssMiB: { min: +(Math.min(...rss) / 1024).toFixed(1), max: +(Math.max(...rss) / 1024).toFixed(1), last: +(rss.at(-1)! / 1024).toFixed(1) },
    rssSplitMiB,
    cpuSeconds: +cpuSeconds.toFixed(2),
    cpuPercentAvg: +((cpuSeconds / wall) * 100).toFixed(2),
    heartbeatReportedRssMiB: +(hb.metrics.rssBytes / 1048576).toFixed(1),
  }));
} finally {
  if (daemon) await killAndWait(daemon);
  const pids = (await runProcess('ip', ['netns', 'pids', ns])).stdout.split('\n').filter((p) => /^\d+$/.test(p));
  for (const p of pids) process.kill(Number(p), 'SIGKILL');
  await runProcess('ip', ['netns', 'del', ns]);
  await runProcess('ip', ['link', 'del', vh]);
  for (const w of wg) rmSync(`/var/run/wireguard/${w}.sock`, { force: true });
  if (t) {
    await t.close();
    removeDir(t.dataDir);
  }
  removeDir(dir);
}
