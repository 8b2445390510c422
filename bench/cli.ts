/**
 * Figure 7, the CLI (issue 17: every client command under 150 ms wall on an idle machine): each
 * client command run as a user runs it, `bin/tether …` (bash, the set-up check, Node, the CLI),
 * against a real running control plane, `runs` times back to back. Reports the median and the
 * slowest wall time, and the CPU (user+sys of the process tree, from bash's `times`).
 * `BENCH_CLI_ROOT=/other/checkout` runs the CLI of another tree (before/after comparisons) against
 * the same control plane.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchServer } from './lib/server.ts';
import { REPO_ROOT } from './lib/util.ts';

export interface CliTiming {
  command: string;
  runs: number;
  wallMsMedian: number;
  wallMsMax: number;
  cpuMsMedian: number;
  failed: number;
}

/** One run: wall time around the process, CPU of its children from bash's `times`. */
function once(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ wallMs: number; cpuMs: number; code: number | null; output: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    // `times` prints the shell's and then its children's user/sys time ("0m0.071s 0m0.020s").
    const p = spawn('bash', ['-c', '"$@" >/dev/null; rc=$?; times; exit $rc', 'bench', 'bash', bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      const wallMs = performance.now() - t0;
      const children = out.trim().split('\n').at(-1) ?? '';
      const secs = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((s, m) => s + Number(m[1]) * 60 + Number(m[2]), 0);
      resolve({ wallMs, cpuMs: secs * 1000, code, output: err });
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};

export async function cliBench(s: BenchServer, o: { runs: number; workDir: string; log: (s: string) => void }): Promise<CliTiming[]> {
  const root = process.env.BENCH_CLI_ROOT ?? REPO_ROOT;
  const bin = join(root, 'bin/tether');
  const env = { ...process.env, TETHER_URL: s.url, TETHER_CA_FILE: join(s.dataDir, 'ca.crt'), TETHER_API_KEY: s.adminToken, XDG_CONFIG_HOME: o.workDir };
  // What the commands read: a cluster, a finished job (follow returns at once), a queued one to cancel.
  const cid = `cli${Date.now().toString(36).slice(-6)}`;
  await s.admin.request('POST', '/v1/clusters', { cid });
  const file = join(o.workDir, 'job.yaml');
  writeFileSync(file, `target: {cluster: ${cid}}\ntype: manifest\nspec:\n  manifests: "kind: ConfigMap"\n`);
  const submit = async () => (await s.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: cid }, type: 'manifest', spec: { manifests: 'kind: ConfigMap' } })).body.id;
  const done = await submit();
  await s.admin.request('POST', `/v1/commands/${done}/cancel`);
  const commands: { name: string; args: () => Promise<string[]> | string[] }[] = [
    { name: '--version', args: () => ['--version'] },
    { name: '--help', args: () => ['--help'] },
    { name: 'wait', args: () => ['wait'] },
    { name: 'clusters list', args: () => ['clusters', 'list'] },
    { name: 'clusters create', args: () => ['clusters', 'create', `c${Math.random().toString(36).slice(2, 10)}`] },
    { name: 'tokens create', args: () => ['tokens', 'create', '--cluster', cid, '--role', 'cluster-agent'] },
    { name: 'submit -f', args: () => ['submit', '-f', file] },
    { name: 'jobs list', args: () => ['jobs', 'list'] },
    { name: 'jobs show', args: () => ['jobs', 'show', String(done)] },
    { name: 'follow (finished job)', args: () => ['follow', String(done)] },
    { name: 'cancel', args: async () => ['cancel', String(await submit())] },
    { name: 'agents list', args: () => ['agents', 'list'] },
    { name: 'vpn show', args: () => ['vpn', 'show', cid] },
    { name: 'bundles list', args: () => ['bundles', 'list'] },
    { name: 'instances list', args: () => ['instances', 'list'] },
  ];
  // One warm-up run: the first builds dist/cli when it is missing or stale (not a client's cost).
  await once(bin, ['--version'], env);
  const out: CliTiming[] = [];
  for (const c of commands) {
    const wall: number[] = [];
    const cpu: number[] = [];
    let failed = 0;
    for (let i = 0; i < o.runs; i++) {
      const r = await once(bin, await c.args(), env);
      // `follow` of a cancelled job exits 1 by design; everything else must succeed.
      if (r.code !== 0 && !(c.name.startsWith('follow') && r.code === 1)) {
        failed++;
        if (failed === 1) o.log(`cli: tether ${c.name} exited ${r.code}: ${r.output.trim().slice(0, 200)}`);
      }
      wall.push(r.wallMs);
      cpu.push(r.cpuMs);
    }
    out.push({ command: c.name, runs: o.runs, wallMsMedian: Math.round(median(wall)), wallMsMax: Math.round(Math.max(...wall)), cpuMsMedian: Math.round(median(cpu)), failed });
  }
  return out;
}
