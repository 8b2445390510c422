/**
 * The real cluster agent (a child process, with a real kube-apiserver and real tofu/helm) killed
 * with kill -9 in the middle of a command, repeated; then stopped with SIGTERM during a run.
 *
 * kill -9: the attempt's lease expires (short lease on the control plane), the command is
 * requeued and runs again only after that; a late result or log batch from the killed attempt
 * (old lease id read from the SQLite file, sent with the agent's own certificate) is refused with
 * 409 stale_lease; the killed agent's helm/tofu child dies with it (setpriv --pdeathsig) and any
 * grandchild is gone once the agent is back; each command ends in exactly one terminal state;
 * the tofu state lock the killed attempt left (created before the restarted agent started) is
 * force-unlocked, so the rerun succeeds; likewise a helm release left pending-install is
 * uninstalled and installed again.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../common/agent/agent-client.ts';
import { HttpError } from '../../common/http-client.ts';
import { startEnvtest, type Envtest } from '../support/envtest.ts';
import { eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { NEVER_ENDING_HOOK_JOB, bareRepo, createNamespace, createSecret, job, jobLogs, kubeGet, pidsWithCmdline, secretData, spawnAgent, submit, waitForJob, type AgentProcess, type BareRepo } from '../cluster-agent/support.ts';
import { faultIterations, pidsWithEnv, readCommands } from './support.ts';

const CID = 'kilo';
const NS = 'tether-system';
const ITERATIONS = faultIterations(2);
const LEASE_SECONDS = 2;

/** A module whose apply sleeps in a local-exec provisioner (a grandchild of the agent). */
const sleepModule = (seconds: string) => `
resource "terraform_data" "slow" {
  input = "${seconds}"
  provisioner "local-exec" {
    command = "sleep ${seconds}"
  }
}
`;

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

describe(`faults: the cluster agent killed (kill -9) and stopped (SIGTERM) mid-command (${ITERATIONS} iterations)`, function () {
  this.timeout(120_000 + ITERATIONS * 60_000);
  let env: Envtest;
  let t: TestControlPlane;
  let dir: string;
  let repo: BareRepo;
  let agent: AgentProcess | undefined;
  const workDir = () => join(dir, 'work');
  const start = (token?: string, extra: Record<string, string> = {}) => spawnAgent({ t, env, namespace: NS, workDir: workDir(), token, extra });
  /** An mTLS client holding the agent's own certificate, from its identity Secret. */
  const asTheAgent = async () => {
    const id = (await secretData(env, NS, 'tether-agent-identity'))!;
    return new AgentClient(t.url, { certPem: id['tls.crt']!, keyPem: id['tls.key']!, caPem: t.caPem });
  };

  before(async () => {
    dir = tempDir('tether-faults-agent-');
    [env, t] = await Promise.all([startEnvtest(), startTestControlPlane({ dataDir: join(dir, 'cp'), leaseSeconds: LEASE_SECONDS })]);
    await t.createCluster(CID);
    await createNamespace(env, NS);
    repo = bareRepo(dir, 'infra');
    const files: Record<string, string> = { 'modules/short/main.tf': sleepModule('2.5'), 'modules/long/main.tf': sleepModule('3011') };
    for (let i = 0; i < ITERATIONS; i++) files[`modules/kill${i}/main.tf`] = sleepModule(`4.${String(i).padStart(4, '0')}`);
    // A post-install hook Job (never completes without a kubelet) until the Secret hook-go-ahead exists.
    files['charts/held/Chart.yaml'] = 'apiVersion: v2\nname: held\nversion: 0.1.0\n';
    files['charts/held/templates/configmap.yaml'] = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  a: b\n';
    files['charts/held/templates/hook.yaml'] = [
      '{{- if not (lookup "v1" "Secret" .Release.Namespace "hook-go-ahead") }}',
      ...NEVER_ENDING_HOOK_JOB,
      '{{- end }}',
      '',
    ].join('\n');
    repo.commit(files);
    agent = start(await t.bootstrapToken(CID, 'cluster-agent'));
    await agent.waitForLog(/cluster agent running/);
  });

  after(async () => {
    await agent?.stop('SIGKILL');
    await t?.close();
    await env?.stop();
    if (dir) removeDir(dir);
  });

  it('kill -9 mid-command, repeated: lease expiry before the rerun, stale results refused, no orphan process, stale state lock cleared, the rerun succeeds', async () => {
    const summary: string[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const marker = `sleep 4.${String(i).padStart(4, '0')}`;
      const id = await submit(t, CID, 'tofu', { source: { git: { url: repo.url, ref: 'main', path: `modules/kill${i}` } }, stateName: `kill${i}` }, { maxAttempts: 3 });
      // The middle of the command: tofu is applying and its provisioner's sleep runs.
      await eventually(() => pidsWithCmdline(marker).length > 0, 90_000, `"${marker}" to run`).catch(async (err: Error) => {
        throw new Error(`${err.message}; job ${(await job(t, id)).state}; logs:\n${await jobLogs(t, id)}\n--- agent ---\n${agent!.output().slice(-3000)}`);
      });
      const first = readCommands(t.dataDir).find((r) => r.id === id)!;
      assert.equal(first.state, 'running');
      assert.equal(first.attempts, 1);
      const runIds = readdirSync(join(workDir(), 'processes'));
      assert.ok(runIds.length >= 1, 'the run is recorded under the work dir');
      const ofKilledRuns = () => runIds.flatMap((r) => pidsWithEnv(`TETHER_RUN_ID=${r}`));
      assert.ok(ofKilledRuns().some((p) => comm(p) === 'tofu'), 'tofu carries the run id');

      await agent!.stop('SIGKILL');
      // The kernel kills the direct child with the agent (pdeathsig); the provisioner's sleep may outlive it.
      await eventually(() => !ofKilledRuns().some((p) => comm(p) === 'tofu'), 10_000, 'tofu to die with the agent');

      // While the lease is valid nothing runs; track the lease end the control plane holds.
      let leaseEnd = first.lease_expires_at!;
      const requeued = await eventually(() => {
        const r = readCommands(t.dataDir).find((x) => x.id === id)!;
        if (r.attempts === 1 && r.state === 'running') leaseEnd = Math.max(leaseEnd, r.lease_expires_at ?? 0);
        return r.state === 'queued' ? r : undefined;
      }, (LEASE_SECONDS + 10) * 1000, 'the lease to expire and the command to be requeued').catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(readCommands(t.dataDir).find((x) => x.id === id))} now ${Date.now()}`);
      });
      assert.equal(requeued.attempts, 1);
      assert.equal(requeued.lease_id, null, 'the requeue drops the old lease');

      agent = start();
      await agent.waitForLog(/cluster agent running/);
      const second = await eventually(() => {
        const r = readCommands(t.dataDir).find((x) => x.id === id)!;
        return r.attempts === 2 && r.claimed_at ? r : undefined;
      }, 30_000, 'the second attempt');
      assert.ok(second.claimed_at! >= leaseEnd, `attempt 2 claimed at ${second.claimed_at} before attempt 1's lease ended at ${leaseEnd}`);
      assert.notEqual(second.lease_id, first.lease_id);

      // Now the killed attempt's late result and logs: refused, 409 stale_lease.
      const client = await asTheAgent();
      for (const p of [
        client.report(id, { leaseId: first.lease_id!, outcome: 'succeeded', outputs: { late: true } }),
        client.logs(id, first.lease_id!, [{ stream: 'stdout', text: 'late line from the killed attempt' }]),
      ]) {
        const err = await p.then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof HttpError, 'a late report from the killed attempt was accepted');
        assert.equal(err.status, 409);
        assert.equal(err.code, 'stale_lease');
      }
      client.close();

      // The restarted agent reaped what the killed one left behind.
      await eventually(() => ofKilledRuns().length === 0, 15_000, 'no process of the killed runs').catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(ofKilledRuns().map((p) => [p, comm(p)]))}`);
      });

      const v = await waitForJob(t, id, 120_000);
      const logs = await jobLogs(t, id);
      assert.ok(!logs.includes('late line from the killed attempt'), 'a stale log line was stored');
      assert.ok(!JSON.stringify(v.outputs ?? {}).includes('"late"'), 'the stale result was applied');
      // The killed attempt's state lock predates the restarted agent: cleared, and the rerun applies.
      assert.equal(v.state, 'succeeded', `the rerun after kill -9 failed: ${JSON.stringify(v.error)}\nlogs:\n${logs.slice(-3000)}`);
      assert.match(logs, /clearing the stale state lock/, 'the rerun says it cleared the lock the killed attempt left');
      const final = readCommands(t.dataDir).find((x) => x.id === id)!;
      assert.equal(final.attempts, 2, 'ran exactly twice: the killed attempt and the rerun');
      summary.push(`${id}:${v.state}`);
    }
    console.warn(`      kill -9 x${ITERATIONS}: ${summary.join(', ')}`);
  });

  it('kill -9 mid helm install: the rerun uninstalls the release left pending-install, then installs it', async () => {
    const id = await submit(t, CID, 'helm', { release: 'held', namespace: NS, chart: { git: { url: repo.url, ref: 'main', path: 'charts/held' } } }, { maxAttempts: 3 });
    // helm waits for the hook Job: the release is pending-install.
    await eventually(async () => (await kubeGet(env, `/apis/batch/v1/namespaces/${NS}/jobs/held-hook`)) !== undefined, 60_000, 'the hook Job (helm waiting on it)');
    await agent!.stop('SIGKILL');
    await createSecret(env, NS, 'hook-go-ahead', {});
    await eventually(() => readCommands(t.dataDir).find((x) => x.id === id)?.state === 'queued', (LEASE_SECONDS + 10) * 1000, 'the requeue');
    agent = start();
    await agent.waitForLog(/cluster agent running/);
    const v = await waitForJob(t, id, 90_000);
    const logs = await jobLogs(t, id);
    assert.equal(v.state, 'succeeded', `${JSON.stringify(v.error)}\nlogs:\n${logs.slice(-3000)}`);
    assert.match(logs, /clearing the stale pending release .*pending-install.*uninstalling/);
    assert.equal(readCommands(t.dataDir).find((x) => x.id === id)!.attempts, 2);
    assert.equal((v.outputs as { status?: string }).status, 'deployed');
  });

  it('SIGTERM during a run: stops polling, lets the command finish within the grace period, reports it, exits 0', async () => {
    const id = await submit(t, CID, 'tofu', { source: { git: { url: repo.url, ref: 'main', path: 'modules/short' } }, stateName: 'graceful' });
    await eventually(() => pidsWithCmdline('sleep 2.5').length > 0, 90_000, 'the short apply to run');
    agent!.proc.kill('SIGTERM');
    await agent!.waitForLog(/stopping: no new work/);
    const queuedAfter = await submit(t, CID, 'manifest', { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-sigterm}\n', namespace: NS });
    assert.equal(await agent!.stop(), 0, 'graceful exit code');
    const v = await job(t, id);
    assert.equal(v.state, 'succeeded', `the running command finished and was reported: ${JSON.stringify(v.error)}`);
    assert.equal((await job(t, queuedAfter)).state, 'queued', 'nothing new was claimed after SIGTERM');
    agent = start();
    await agent.waitForLog(/cluster agent running/);
    assert.equal((await waitForJob(t, queuedAfter)).state, 'succeeded');
  });

  it('SIGTERM during a run longer than the grace period: the run is cancelled, its processes killed, the outcome reported', async () => {
    await agent!.stop();
    agent = start(undefined, { TETHER_SHUTDOWN_GRACE_SECONDS: '1', TETHER_KILL_GRACE_SECONDS: '1' });
    await agent.waitForLog(/cluster agent running/);
    const id = await submit(t, CID, 'tofu', { source: { git: { url: repo.url, ref: 'main', path: 'modules/long' } }, stateName: 'longrun' });
    await eventually(() => pidsWithCmdline('sleep 3011').length > 0, 90_000, 'the long apply to run');
    assert.equal(await agent.stop('SIGTERM'), 0);
    const v = await job(t, id);
    assert.equal(v.state, 'cancelled', `reported before exit: ${v.state}`);
    assert.match(v.error?.message ?? '', /shutting down/);
    assert.deepEqual(pidsWithCmdline('sleep 3011'), [], 'no process of the run survives');
    assert.deepEqual(existsSync(join(workDir(), 'outbox')) ? readdirSync(join(workDir(), 'outbox')) : [], [], 'nothing left undelivered');
    agent = start();
    await agent.waitForLog(/cluster agent running/);
  });
});
