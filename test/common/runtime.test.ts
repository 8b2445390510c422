/**
 * The agents' consumer loop against a real control plane over mTLS: execution and results,
 * masked logs, cancellation and timeouts through the AbortSignal, the outbox across an outage,
 * graceful stop.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentRuntime, StopReason, type Executor, type Outcome } from '../../common/agent/runtime.ts';
import { FileOutbox } from '../../common/agent/outbox.ts';
import { silentLogger } from '../../common/logger.ts';
import pino from 'pino';
import type { CommandView } from '../../common/wire.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestAgent, type TestControlPlane } from '../support/control-plane.ts';

const waitForAbort = (signal: AbortSignal) =>
  new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));

describe('agent runtime (common/agent)', function () {
  this.timeout(30_000);
  let t: TestControlPlane;
  let agent: TestAgent;
  const runtimes: AgentRuntime[] = [];

  const runtime = (execute: Executor, extra: Partial<ConstructorParameters<typeof AgentRuntime>[0]> = {}) => {
    const r = new AgentRuntime({
      client: agent.client,
      execute,
      log: silentLogger(),
      version: 'test',
      collectMetrics: () => ({ cpuPercent: 1 }),
      heartbeatIntervalMs: 200,
      pollWaitSeconds: 5,
      minBackoffMs: 50,
      maxBackoffMs: 200,
      ...extra,
    });
    runtimes.push(r);
    r.start();
    return r;
  };
  const submit = async (spec: Record<string, unknown> = { manifests: 'kind: X' }, extra: Record<string, unknown> = {}) =>
    (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'rt1' }, type: 'manifest', spec, ...extra })).body.id;
  const job = async (id: number) => (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
  const finished = (id: number) => eventually(async () => {
    const j = await job(id);
    return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.state) ? j : undefined;
  }, 20_000, `job ${id} to finish`);

  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('rt1');
    agent = await t.agent('rt1', 'cluster-agent');
  });
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((r) => r.stop(100)));
  });
  after(async () => {
    agent.client.close();
    await t.close();
    removeDir(t.dataDir);
  });

  it('executes a claimed command, ships its log with secrets masked, and reports outputs', async () => {
    const secret = 's3cr3t-value-123';
    runtime(async (cmd, ctx) => {
      ctx.mask(secret);
      ctx.emit(`connecting with password ${secret}`, 'stdout');
      return { status: 'succeeded', outputs: { type: cmd.type, attempt: cmd.attempt } };
    });
    const id = await submit();
    const j = await finished(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.outputs, { type: 'manifest', attempt: 1 });
    const { lines } = (await t.admin.request<{ lines: { text: string }[] }>('GET', `/v1/commands/${id}/logs`)).body;
    assert.ok(lines.some((l) => l.text === 'connecting with password ***'), JSON.stringify(lines));
    for (const f of ['tether.db', 'tether.db-wal']) assert.ok(!readFileSync(join(t.dataDir, f)).includes(secret), `${f} holds no secret`);
  });

  it('reports an executor exception as a failure and keeps going', async () => {
    let n = 0;
    runtime(async () => {
      n++;
      if (n === 1) throw new Error('kaboom');
      return { status: 'succeeded' };
    });
    const a = await submit();
    const b = await submit();
    const ja = await finished(a);
    assert.equal(ja.state, 'failed');
    assert.equal(ja.error?.code, 'executor_error');
    assert.match(ja.error?.message ?? '', /kaboom/);
    assert.equal((await finished(b)).state, 'succeeded');
  });

  it('heartbeats only what changed since the last acknowledged beat, and everything after a reconnect or a full interval', async () => {
    const sent: Record<string, unknown>[] = [];
    const real = agent.client.heartbeat.bind(agent.client);
    agent.client.heartbeat = (hb, signal) => {
      sent.push(JSON.parse(JSON.stringify(hb)));
      return real(hb, signal);
    };
    const fulls = () => sent.filter((b) => b.version === 'test').length;
    try {
      let cpu = 0;
      const collectMetrics = () => ({ cpuPercent: ++cpu, memoryTotalBytes: 1000 });
      let r = runtime(async () => ({ status: 'succeeded' }), { collectMetrics, fullHeartbeatMs: 60_000 });
      await eventually(() => sent.length >= 5, 10_000, 'five heartbeats');
      assert.deepEqual(sent[0], { version: 'test', metrics: { cpuPercent: 1, memoryTotalBytes: 1000 } });
      assert.deepEqual(sent[1], { metrics: { cpuPercent: 2 } }, 'unchanged fields (and an empty running list) are left out');
      assert.equal(fulls(), 1, JSON.stringify(sent));
      // A new connection (here: a certificate swap) may face a restarted control plane: all again.
      agent.client.setCertificate(agent.identity.certificate);
      await eventually(() => fulls() === 2, 10_000, 'a full heartbeat on the new connection');
      await r.stop(100);
      // And once per full interval without any reconnect.
      r = runtime(async () => ({ status: 'succeeded' }), { collectMetrics, fullHeartbeatMs: 600 });
      await eventually(() => fulls() >= 5, 10_000, 'full heartbeats every interval');
      await r.stop(100);
      for (const b of sent.filter((x) => x.version === 'test')) assert.equal((b.metrics as { memoryTotalBytes?: number }).memoryTotalBytes, 1000);
      // The control plane merged the deltas: the stored view is complete and current.
      const view = (await t.admin.request<{ version: string; metrics: Record<string, number> }>('GET', `/v1/agents/${agent.identity.agentId}`)).body;
      assert.equal(view.version, 'test');
      assert.equal(view.metrics.memoryTotalBytes, 1000);
      assert.equal(view.metrics.cpuPercent, (sent.at(-1)!.metrics as { cpuPercent: number }).cpuPercent);
    } finally {
      agent.client.heartbeat = real;
    }
  });

  it('cancels a running execution through its AbortSignal', async () => {
    let started = false;
    runtime(async (_cmd, ctx) => {
      started = true;
      await waitForAbort(ctx.signal);
      assert.ok(ctx.signal.reason instanceof StopReason);
      return { status: 'failed', error: { code: 'executor_error', message: 'stopped' } } satisfies Outcome;
    });
    const id = await submit();
    await eventually(() => started, 10_000, 'execution to start');
    await t.admin.request('POST', `/v1/commands/${id}/cancel`);
    const j = await finished(id);
    assert.equal(j.state, 'cancelled');
  });

  it('times out an execution at the command timeout', async () => {
    runtime(async (_cmd, ctx) => {
      await waitForAbort(ctx.signal);
      return { status: 'failed', error: { code: 'executor_error', message: 'stopped' } };
    });
    const id = await submit(undefined, { timeoutSeconds: 1 });
    const j = await finished(id);
    assert.equal(j.state, 'timed_out');
    assert.match(j.error?.message ?? '', /timeout of 1s/);
  });

  it('keeps a result in the on-disk outbox while the control plane is down and delivers it after', async () => {
    const dir = tempDir('tether-outbox-');
    const port = t.cp.port;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const r = runtime(async () => {
      await gate;
      return { status: 'succeeded', outputs: { late: true } };
    }, { outbox: new FileOutbox(dir) });
    const id = await submit();
    await eventually(() => r.runningIds.includes(id), 10_000, 'execution to start');
    // The control plane goes away (same data folder and port come back later).
    await t.cp.close();
    release();
    await eventually(() => new FileOutbox(dir).list().then((l) => l.length === 1), 10_000, 'result stored in the outbox');
    const { startControlPlane } = await import('../../control-plane/app.ts');
    t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    const j = await finished(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.outputs, { late: true });
    await eventually(() => new FileOutbox(dir).list().then((l) => l.length === 0), 10_000, 'outbox emptied');
    await r.stop(100);
    removeDir(dir);
  });

  it('stops gracefully: lets running work finish within the grace period, cancels it after', async () => {
    let finishedInTime = false;
    const r1 = runtime(async () => {
      await new Promise((res) => setTimeout(res, 300));
      finishedInTime = true;
      return { status: 'succeeded' };
    });
    const a = await submit();
    await eventually(() => r1.runningIds.includes(a), 10_000, 'execution to start');
    await r1.stop(5_000);
    assert.equal(finishedInTime, true);
    assert.equal((await job(a)).state, 'succeeded');

    const r2 = runtime(async (_c, ctx) => {
      await waitForAbort(ctx.signal);
      return { status: 'failed', error: { code: 'executor_error', message: 'x' } };
    });
    const b = await submit();
    await eventually(() => r2.runningIds.includes(b), 10_000, 'execution to start');
    await r2.stop(200);
    const jb = await job(b);
    assert.equal(jb.state, 'cancelled');
    assert.match(jb.error?.message ?? '', /shutting down/);
  });

  it('heartbeats with metrics while idle', async () => {
    runtime(async () => ({ status: 'succeeded' }));
    await eventually(async () => {
      const a = (await t.admin.request<{ metrics: { cpuPercent?: number } | null; version: string | null }>('GET', `/v1/agents/${agent.identity.agentId}`)).body;
      return a.version === 'test' && a.metrics?.cpuPercent === 1;
    }, 10_000, 'a heartbeat');
  });

  it('keeps retrying with backoff while the control plane is down, and picks up work once it is back', async () => {
    const port = t.cp.port;
    await t.cp.close();
    runtime(async () => ({ status: 'succeeded', outputs: { recovered: true } }));
    await new Promise((res) => setTimeout(res, 500)); // several refused polls
    const { startControlPlane } = await import('../../control-plane/app.ts');
    t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    const id = await submit();
    const j = await finished(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.outputs, { recovered: true });
  });

  it('waits out the Retry-After of a draining control plane: no poll or heartbeat before it ends, then backs off from the start and picks up work', async () => {
    // Every poll and heartbeat the runtime starts, with its time.
    const calls: { at: number; what: string }[] = [];
    const client = new Proxy(agent.client, {
      get(target, p) {
        const v = Reflect.get(target, p, target) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (p === 'poll' || p === 'heartbeat') calls.push({ at: Date.now(), what: p });
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const lines: { msg: string; time: number; cause?: string; retryInMs?: number }[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    // Without the Retry-After it would poll again after 50–100 ms and heartbeat every 200 ms.
    runtime(async () => ({ status: 'succeeded', outputs: { back: true } }), { client, log });
    await eventually(async () => (await t.cp.metrics.longPollsHeld.get()).values[0]?.value === 1, 10_000, 'the poll to be held');
    const port = t.cp.port;
    await t.cp.close(); // the drain: the held poll is answered 503 draining with a Retry-After
    const failures = () => lines.filter((l) => l.msg === 'poll failed; backing off');
    let waited;
    let after;
    try {
      waited = await eventually(async () => failures()[0], 10_000, 'the poll to fail');
      // Still down when the wait ends: the next failure backs off from the first attempt again.
      const ends = waited.time + (waited.retryInMs ?? 0);
      after = await eventually(async () => failures().find((l) => l.time >= ends), 10_000, 'a failure after the wait');
    } finally {
      // Back on the same port (the next tests use it).
      const { startControlPlane } = await import('../../control-plane/app.ts');
      t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    }
    assert.equal(waited.cause, 'retry_after', JSON.stringify(waited));
    // One agent held: the drain asks for MIN_RETRY_AFTER_S (2 s); the agent adds up to 1 s of jitter.
    assert.ok(waited.retryInMs! >= 2000 && waited.retryInMs! < 3000, JSON.stringify(waited));
    // minBackoffMs 50: a first attempt waits 50–100 ms, a second 100–200.
    assert.ok(after.cause === 'backoff' && after.retryInMs! <= 100, JSON.stringify(after));
    const quietEnds = waited.time + waited.retryInMs!;
    await eventually(async () => calls.some((c) => c.at >= quietEnds), 10_000, 'a request after the Retry-After');
    const early = calls.filter((c) => c.at > waited.time && c.at < quietEnds);
    assert.deepEqual(early, [], `nothing sent during the ${waited.retryInMs} ms asked for`);
    const id = await submit();
    const j = await finished(id);
    assert.equal(j.state, 'succeeded');
    assert.deepEqual(j.outputs, { back: true });
  });

  it('backs its heartbeats off while the control plane stays unreachable, and is back at the usual pace once one gets through', async () => {
    const port = t.cp.port;
    await t.cp.close();
    const beats: number[] = [];
    const client = new Proxy(agent.client, {
      get(target, p) {
        const v = Reflect.get(target, p, target) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (p === 'heartbeat') beats.push(Date.now());
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const lines: { msg: string; failures?: number; backoffMs?: number }[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    // Every 100 ms, the cap at 1.6 s: at the interval's pace 30 heartbeats in 3 s; backing off
    // (0, 100-200, 200-400, 400-800, 800-1,600, then 1,600 ms, each to the next tick) at most 8.
    runtime(async () => ({ status: 'succeeded' }), { client, log, heartbeatIntervalMs: 100, maxBackoffMs: 1600 });
    await new Promise((res) => setTimeout(res, 3000));
    const down = beats.length;
    const failed = lines.filter((l) => l.msg === 'heartbeat failed');
    const { startControlPlane } = await import('../../control-plane/app.ts');
    t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    assert.ok(down >= 4 && down <= 8, `${down} heartbeats in 3 s unreachable: ${JSON.stringify(failed.map((l) => [l.failures, l.backoffMs]))}`);
    assert.deepEqual(failed.map((l) => l.failures), failed.map((_, i) => i + 1), 'each failure counted');
    assert.equal(failed[0]!.backoffMs, undefined, 'the first failure: the next tick, as usual');
    assert.ok(failed.slice(1).every((l) => l.backoffMs! > 0 && l.backoffMs! <= 1600), JSON.stringify(failed.map((l) => [l.failures, l.backoffMs])));
    // Back within the cap (and a tick), then every 100 ms again.
    const backAt = Date.now();
    const after = () => beats.filter((b) => b > backAt);
    await eventually(async () => (after().length >= 6 ? true : undefined), 5000, 'six heartbeats after the restart');
    const back = after();
    assert.ok(back[0]! - backAt <= 1600 + 200, `the first heartbeat ${back[0]! - backAt} ms after the restart`);
    const gaps = back.slice(2).map((b, i) => b - back[i + 1]!);
    assert.ok(gaps.every((g) => g < 400), `the usual pace again: ${gaps.join(' ')} ms`);
    assert.equal(lines.filter((l) => l.msg === 'heartbeat failed').length <= failed.length + 1, true, 'at most the heartbeat in flight failed after the restart');
  });

  it('polls again as soon as a heartbeat gets through, not after the backoff it built up while the control plane was down', async () => {
    const port = t.cp.port;
    await t.cp.close();
    // Backoff of 30 s to 60 s after the first refused poll; heartbeats every 200 ms.
    const r = runtime(async () => ({ status: 'succeeded' }), { minBackoffMs: 30_000, maxBackoffMs: 60_000 });
    await new Promise((res) => setTimeout(res, 500));
    const { startControlPlane } = await import('../../control-plane/app.ts');
    t.cp = await startControlPlane({ dataDir: t.dataDir, host: '127.0.0.1', port }, { log: silentLogger() });
    const id = await submit();
    // Well inside the 30 s the poll loop would otherwise still be sleeping.
    const j = await eventually(async () => ((await job(id)).state === 'succeeded' ? job(id) : undefined), 10_000, `job ${id} to run after the restart`);
    assert.equal(j.state, 'succeeded');
    assert.ok(r.lastHeartbeatAt > 0);
  });
});
