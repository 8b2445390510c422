/**
 * Losing the control plane: the agents' consumer loop (the shared AgentRuntime, real mTLS client)
 * backs off 1 s -> 60 s with jitter (checked here with small bounds), reconnects within one backoff
 * step once the control plane is back, and delivers results produced while it was away from its
 * on-disk outbox. The node/agent status turns degraded and offline at the documented thresholds
 * (10 s, 30 s without a heartbeat; ManualClock).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../common/clock.ts';
import { HttpClient } from '../../common/http-client.ts';
import { AgentRuntime, type Executor } from '../../common/agent/runtime.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { HEALTHY_BELOW_S, OFFLINE_FROM_S, type AgentView, type CommandView } from '../../common/wire.ts';
import { eventually, freePort, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { captureLogger, faultIterations } from './support.ts';

const ITERATIONS = faultIterations(2);
const metrics = () => ({ cpuPercent: 0 });

describe(`faults: network loss between agent and control plane (${ITERATIONS} iterations)`, function () {
  this.timeout(60_000 + ITERATIONS * 15_000);
  let dir: string;
  let port: number;
  let t: TestControlPlane | undefined;
  const up = async () => {
    t = await startTestControlPlane({ dataDir: join(dir, 'cp'), port });
  };
  const down = async () => {
    await t!.close();
    t = undefined;
  };

  before(async () => {
    dir = tempDir('tether-faults-net-');
    port = await freePort();
    await up();
    await t!.createCluster('netw');
  });
  after(async () => {
    await t?.close();
    removeDir(dir);
  });

  it('backs off with jitter up to the cap, reconnects within one step, and delivers results produced while away', async () => {
    const MIN = 40;
    const MAX = 320;
    const a = await t!.agent('netw', 'cluster-agent');
    const caPem = t!.caPem;
    const client = new AgentClient(t!.url, { certPem: a.identity.certificate, keyPem: a.keys.privateKeyPem, caPem });
    const logs = captureLogger('debug');
    let release: (() => void) | undefined;
    const started: number[] = [];
    const execute: Executor = async (cmd) => {
      started.push(cmd.id);
      await new Promise<void>((r) => (release = r));
      return { status: 'succeeded', outputs: { ranWhileAway: cmd.id } };
    };
    const outboxDir = join(dir, 'outbox');
    const runtime = new AgentRuntime({
      client, execute, log: logs.log, version: 'test', collectMetrics: metrics,
      heartbeatIntervalMs: 200, pollWaitSeconds: 1, minBackoffMs: MIN, maxBackoffMs: MAX, outbox: new FileOutbox(outboxDir),
    });
    runtime.start();
    const failures = () => logs.lines().filter((l) => l.msg === 'poll failed; backing off');
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        release = undefined;
        const id = (await t!.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'netw' }, type: 'manifest', spec: { manifests: 'kind: ConfigMap\n' } })).body.id;
        await eventually(() => release !== undefined && started.includes(id), 10_000, 'the command to start');

        // The link goes: the command finishes while the control plane is unreachable.
        await down();
        const before = failures().length;
        release!();
        await eventually(() => existsSync(outboxDir) && readdirSync(outboxDir).some((f) => f.startsWith(`${id}-`)), 10_000, 'the result in the on-disk outbox');
        await eventually(() => failures().length - before >= 8, 30_000, 'eight failed polls');

        // The schedule: attempt n waits min * 2^(n-1) .. twice that (jitter), never more than the cap.
        const seq = failures().slice(before).map((l) => ({ n: Number(l.attempt), ms: Number(l.retryInMs) }));
        for (const { n, ms } of seq) {
          const base = MIN * 2 ** (n - 1);
          assert.ok(ms >= Math.min(base, MAX) && ms <= Math.min(2 * base, MAX), `attempt ${n} waits ${ms} ms, outside [${Math.min(base, MAX)}, ${Math.min(2 * base, MAX)}]`);
        }
        assert.ok(seq.some(({ n, ms }) => MIN * 2 ** (n - 1) < MAX && ms !== MIN * 2 ** (n - 1)), `no jitter in ${JSON.stringify(seq)}`);
        assert.ok(seq.some(({ ms }) => ms === MAX), `the cap is reached: ${JSON.stringify(seq)}`);

        // The link returns: at most the one retry already scheduled fails, then the result is delivered.
        await up();
        client.setCertificate(a.identity.certificate); // fresh connections to the restarted server
        const back = failures().length;
        const v = await eventually(async () => {
          const c = (await t!.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
          return c.state === 'succeeded' ? c : undefined;
        }, 10_000, 'the result produced while away to be delivered');
        assert.deepEqual(v.outputs, { ranWhileAway: id });
        assert.ok(failures().length - back <= 1, `${failures().length - back} polls failed after the control plane was back`);
        await eventually(() => readdirSync(outboxDir).length === 0, 5_000, 'the outbox to empty');
        const sample = seq.map((s) => s.ms).join(' ');
        if (i === 0) console.warn(`      backoff (min ${MIN} ms, max ${MAX} ms): ${sample}`);
      }
    } finally {
      await runtime.stop(0);
      client.close();
    }
  });

  it(`shows an agent degraded from ${HEALTHY_BELOW_S} s and offline from ${OFFLINE_FROM_S} s without a heartbeat (ManualClock)`, async () => {
    const clock = new ManualClock();
    const own = await startTestControlPlane({}, { clock });
    try {
      await own.createCluster('clk');
      const a = await own.agent('clk', 'cluster-agent');
      const status = async () => (await own.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents')).body.agents[0]!.status;
      assert.equal(await status(), 'offline', 'never heard of: offline');
      await a.client.heartbeat({ version: 't', metrics: metrics(), running: [] });
      assert.equal(await status(), 'healthy');
      clock.advance(HEALTHY_BELOW_S * 1000 - 1);
      assert.equal(await status(), 'healthy');
      clock.advance(1);
      assert.equal(await status(), 'degraded');
      clock.advance((OFFLINE_FROM_S - HEALTHY_BELOW_S) * 1000 - 1);
      assert.equal(await status(), 'degraded');
      clock.advance(1);
      assert.equal(await status(), 'offline');
      const scraper = new HttpClient({ baseUrl: own.url, ca: own.caPem, bearerToken: readFileSync(own.cp.metricsTokenFile, 'utf8').trim() });
      const m = await scraper.request<string>('GET', '/metrics').finally(() => scraper.close());
      assert.match(String(m.body), /tether_agents\{status="offline"\} 1/);
      await a.client.heartbeat({ version: 't', metrics: metrics(), running: [] });
      assert.equal(await status(), 'healthy', 'back on the next heartbeat');
      a.client.close();
    } finally {
      await own.close();
      removeDir(own.dataDir);
    }
  });
});
