/**
 * `npm run bench -- --only drift`: scheduled drift checks of many instances (issue 13). A real
 * `tether server` process, a real cluster agent process (concurrency as deployed: 2) on a real
 * kube-apiserver + etcd, and N instances (200) of a one-ConfigMap bundle from a local git source.
 * Once all are deployed, each gets the drift check interval (`--drift-interval-seconds`, the
 * server's default 600; PATCH /v1/instances/{osid}), so the scheduler places their first checks
 * within one interval; measured until every instance has been checked: the time from the
 * settings to the last instance's first check, per-check latency (diff job created → finished,
 * every check that ended in the window), and the CPU time of the control plane and of the
 * cluster agent (/proc/<pid>/stat, utime+stime) per check, less their idle CPU over as long.
 * Progress is read from the server's SQLite file (read-only, WAL) so that measuring costs the
 * control plane nothing.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { DeployResponse, InstanceView } from '../control-plane/bundles/bundles.wire.ts';
import { startEnvtest } from '../test/support/envtest.ts';
import type { TestControlPlane } from '../test/support/control-plane.ts';
import { CONFIG_BUNDLE } from '../test/support/bundles.ts';
import { bareRepo, createNamespace, spawnAgent } from '../test/cluster-agent/support.ts';
import { startServer, metric } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { loadAverage, procSample, sleep, summarize, type LatencySummary } from './lib/util.ts';

export interface DriftBenchResult {
  instances: number;
  intervalSeconds: number;
  agentConcurrency: number;
  deploySeconds: number;
  /** From the settings (all placed at the next tick) to the moment every instance had been checked once. */
  allChecksSeconds: number;
  /** Checks that ended in that window (some instances' second check included). */
  checksEnded: number;
  /** allChecksSeconds ≤ the interval plus one scheduler tick (5 s: the placement waits for it). */
  withinOneInterval: boolean;
  checkLatencyMs: LatencySummary;
  /** Queued → claimed (waiting for one of the agent's slots). */
  queueWaitMs: LatencySummary;
  results: Record<string, number>;
  controlPlaneCpuMsPerCheck: number;
  agentCpuMsPerCheck: number;
  idle: { seconds: number; controlPlaneCpuMs: number; agentCpuMs: number };
  loadAverage: { start: number[]; end: number[] };
}

const AGENT_NS = 'tether-system';

export async function driftBench(o: { dir: string; instances: number; intervalSeconds: number; log: (s: string) => void }): Promise<DriftBenchResult> {
  const { dir, instances: n, intervalSeconds, log } = o;
  mkdirSync(dir, { recursive: true });
  const load0 = loadAverage();
  const env = await startEnvtest();
  const port = await freePort();
  // Server-wide checks off: each instance's interval is set once all are deployed.
  const s = await startServer({ dataDir: join(dir, 'cp'), port, logFile: join(dir, 'server.log'), extraArgs: ['--drift-interval', 'off', '--allow-file-root', dir] });
  let agent: ReturnType<typeof spawnAgent> | undefined;
  try {
    await s.admin.request('POST', '/v1/clusters', { cid: 'bench' });
    await createNamespace(env, AGENT_NS);
    const repo = bareRepo(dir, 'stacks');
    repo.commit(CONFIG_BUNDLE);
    await s.admin.request('POST', '/v1/bundles', { name: 'cfg', url: repo.url, ref: 'main', path: 'cfg' });
    const token = (await s.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: 'bench', role: 'cluster-agent' })).body.token;
    const concurrency = 2;
    agent = spawnAgent({
      t: { url: s.url, caPem: s.caPem } as TestControlPlane,
      env,
      namespace: AGENT_NS,
      workDir: join(dir, 'work'),
      token,
      extra: { TETHER_CONCURRENCY: String(concurrency), TETHER_HEARTBEAT_INTERVAL_MS: '5000', TETHER_POLL_WAIT_SECONDS: '25', TETHER_LOG_LEVEL: 'info' },
    });
    await agent.waitForLog(/cluster agent running/, 120_000);
    const agentPid = agent.proc.pid!;

    log(`drift: deploying ${n} instances`);
    const t0 = Date.now();
    const osids: string[] = [];
    for (let i = 0; i < n; i += 10) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, n - i) }, () => s.admin.request<DeployResponse>('POST', '/v1/instances', { bundle: 'cfg', cluster: 'bench' }).then((r) => r.body.osid)),
      );
      osids.push(...batch);
    }
    for (;;) {
      const list = (await s.admin.request<{ instances: InstanceView[] }>('GET', '/v1/instances')).body.instances;
      const failed = list.filter((i) => i.state === 'failed');
      if (failed.length) throw new Error(`drift: ${failed.length} deployments failed, e.g. ${JSON.stringify(failed[0]!.job)}`);
      if (list.filter((i) => i.state === 'deployed').length === n) break;
      await sleep(2000);
    }
    const deploySeconds = (Date.now() - t0) / 1000;
    log(`drift: ${n} deployed in ${deploySeconds.toFixed(1)} s; idle baseline`);

    const idleSeconds = 15;
    await sleep(3000);
    const idle0 = { cp: procSample(s.pid)!, agent: procSample(agentPid)! };
    await sleep(idleSeconds * 1000);
    const idle1 = { cp: procSample(s.pid)!, agent: procSample(agentPid)! };
    const idle = { seconds: idleSeconds, controlPlaneCpuMs: idle1.cp.cpuMs - idle0.cp.cpuMs, agentCpuMs: idle1.agent.cpuMs - idle0.agent.cpuMs };

    log(`drift: every instance checked every ${intervalSeconds} s from now`);
    const db = new Database(join(dir, 'cp', 'tether.db'), { readonly: true, fileMustExist: true });
    const c0 = { cp: procSample(s.pid)!, agent: procSample(agentPid)!, at: Date.now() };
    for (let i = 0; i < n; i += 20) {
      await Promise.all(osids.slice(i, i + 20).map((osid) => s.admin.request('PATCH', `/v1/instances/${osid}`, { driftCheck: { intervalSeconds } })));
    }
    const checked = db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM instances WHERE last_checked_at >= ?');
    const deadline = Date.now() + intervalSeconds * 3000 + 60_000;
    let done = 0;
    while ((done = checked.get(c0.at)!.n) < n) {
      if (Date.now() > deadline) throw new Error(`drift: only ${done} of ${n} instances checked within ${(deadline - c0.at) / 1000} s`);
      await sleep(500);
    }
    const c1 = { cp: procSample(s.pid)!, agent: procSample(agentPid)!, at: Date.now() };
    const windowS = (c1.at - c0.at) / 1000;
    // Every diff job that ended in the window (ids: the diff flows are the only jobs submitted in it).
    const diffs = db
      .prepare<[number, number], { created_at: number; claimed_at: number; finished_at: number; state: string }>(
        `SELECT created_at, claimed_at, finished_at, state FROM commands WHERE created_at >= ? AND finished_at IS NOT NULL AND finished_at <= ? AND spec LIKE '%"type":"diff"%'`,
      )
      .all(c0.at, c1.at);
    db.close();
    const latency = diffs.map((j) => j.finished_at - j.created_at);
    const wait = diffs.map((j) => j.claimed_at - j.created_at);
    const results: Record<string, number> = {};
    for (const r of ['synced', 'drifted', 'error']) results[r] = (await metric(s, 'tether_drift_checks_total', `result="${r}"`)) || 0;
    const perCheck = (d: number, idleMs: number) => Math.round(((d - (idleMs * windowS) / idleSeconds) / diffs.length) * 100) / 100;
    const allChecksSeconds = windowS;
    return {
      instances: n,
      intervalSeconds,
      agentConcurrency: concurrency,
      deploySeconds: Math.round(deploySeconds * 10) / 10,
      allChecksSeconds: Math.round(allChecksSeconds * 10) / 10,
      checksEnded: diffs.length,
      withinOneInterval: allChecksSeconds <= intervalSeconds + 5,
      checkLatencyMs: summarize(latency),
      queueWaitMs: summarize(wait),
      results,
      controlPlaneCpuMsPerCheck: perCheck(c1.cp.cpuMs - c0.cp.cpuMs, idle.controlPlaneCpuMs),
      agentCpuMsPerCheck: perCheck(c1.agent.cpuMs - c0.agent.cpuMs, idle.agentCpuMs),
      idle,
      loadAverage: { start: load0, end: loadAverage() },
    };
  } finally {
    await agent?.stop();
    await s.stop();
    await env.stop();
  }
}
