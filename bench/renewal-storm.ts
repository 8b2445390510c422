/**
 * One tenant's storms against another tenant's heartbeats (issue 11): a victim agent heartbeats
 * every 100 ms while an attacker agent of another cluster
 *   `renew`:     renews its certificate with 16 requests at a time,
 *   `bootstrap`: bootstraps new agents 16 at a time with valid tokens (every one is signed),
 *   `logs`:      sends 1,000-line log batches for a command it holds, 16 at a time.
 * Prints the victim's heartbeat latency per phase, and what the attacker got.
 *
 *   node bench/renewal-storm.ts [--seconds 15] [--concurrency 16]     (--seconds at most 25: the log
 *   phase's command is held without heartbeats, on a 30 s lease)
 *
 * The control plane is `tether server` in its own process (bench/lib/server.ts), and the attacker
 * runs in a worker thread, so the victim's latency is neither the attacker's client work nor
 * this script's.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { AgentClient, bootstrapAgent } from '../common/agent/agent-client.ts';
import { createCsr, generateKeyPair, type KeyPair } from '../common/csr.ts';
import { HttpClient } from '../common/http-client.ts';
import { startServer } from './lib/server.ts';
import { freePort } from './lib/net.ts';
import { BENCH_CACHE, nowMs, sleep, summarize } from './lib/util.ts';

type Phase = 'quiet' | 'renew' | 'bootstrap' | 'logs';
interface AttackInput {
  phase: Phase;
  seconds: number;
  concurrency: number;
  url: string;
  caPem: string;
  certPem: string;
  keys: KeyPair;
  tokens: string[];
  command?: { id: number; leaseId: string };
}
interface AttackOutcome {
  ok: number;
  refused: Record<string, number>;
}

const MANIFEST = { manifests: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' };

/** The attacker (in its worker thread): `concurrency` loops of one request each until the time is up. */
async function attack(a: AttackInput): Promise<AttackOutcome> {
  const until = Date.now() + a.seconds * 1000;
  const client = new AgentClient(a.url, { certPem: a.certPem, keyPem: a.keys.privateKeyPem, caPem: a.caPem });
  const anonymous = new HttpClient({ baseUrl: a.url, ca: a.caPem });
  // One CSR made up front: node-forge signing per request would measure this thread instead.
  const csr = createCsr(a.keys, 'tether-agent');
  const batch = Array.from({ length: 1000 }, (_, i) => ({ stream: 'stdout' as const, text: `${i} ${'x'.repeat(195)}` }));
  const one: Record<Phase, () => Promise<boolean>> = {
    quiet: async () => (await sleep(until - Date.now()), false),
    renew: async () => (await client.renew(csr), true),
    bootstrap: async () => {
      const token = a.tokens.pop();
      if (!token) return (await sleep(until - Date.now()), false);
      await anonymous.request('POST', '/v1/bootstrap', { token, csr });
      return true;
    },
    logs: async () => (await client.logs(a.command!.id, a.command!.leaseId, batch), true),
  };
  const out: AttackOutcome = { ok: 0, refused: {} };
  await Promise.all(
    Array.from({ length: a.concurrency }, async () => {
      while (Date.now() < until) {
        try {
          if (await one[a.phase]()) out.ok++;
        } catch (err) {
          const code = String((err as { code?: unknown }).code ?? err);
          out.refused[code] = (out.refused[code] ?? 0) + 1;
        }
      }
    }),
  );
  client.close();
  anonymous.close();
  return out;
}

if (!isMainThread) {
  parentPort!.postMessage(await attack(workerData as AttackInput));
} else {
  const { values: flags } = parseArgs({ options: { seconds: { type: 'string', default: '15' }, concurrency: { type: 'string', default: '16' } } });
  const seconds = Number(flags.seconds);
  const concurrency = Number(flags.concurrency);
  const dataDir = join(BENCH_CACHE, `renewal-storm-${process.pid}`);
  rmSync(dataDir, { recursive: true, force: true });
  const logFile = join(BENCH_CACHE, `renewal-storm-${process.pid}.log`);
  const server = await startServer({ dataDir, port: await freePort(), logFile });

  const token = async (cid: string) => (await server.admin.request<{ token: string }>('POST', '/v1/tokens', { cluster: cid, role: 'cluster-agent' })).body.token;
  const agent = async (cid: string) => {
    const keys = generateKeyPair();
    const id = await bootstrapAgent({ url: server.url, caPem: server.caPem, token: await token(cid), keys });
    return { keys, certPem: id.certificate, client: new AgentClient(server.url, { certPem: id.certificate, keyPem: keys.privateKeyPem, caPem: server.caPem }) };
  };

  try {
    for (const cid of ['victim', 'attacker']) await server.admin.request('POST', '/v1/clusters', { cid });
    const victim = await agent('victim');
    const attacker = await agent('attacker');
    const tokens: string[] = [];
    for (let i = 0; i < 400; i++) tokens.push(await token('attacker'));

    const results: Record<string, unknown> = {};
    for (const phase of ['quiet', 'renew', 'bootstrap', 'logs'] as const) {
      let command: AttackInput['command'];
      if (phase === 'logs') {
        // Claimed now, so its lease (30 s, no heartbeats from the attacker) outlasts the phase.
        await server.admin.request('POST', '/v1/commands', { target: { cluster: 'attacker' }, type: 'manifest', spec: MANIFEST });
        const claimed = (await attacker.client.poll(5)).command!;
        command = { id: claimed.id, leaseId: claimed.leaseId };
      }
      const input: AttackInput = { phase, seconds, concurrency, url: server.url, caPem: server.caPem, certPem: attacker.certPem, keys: attacker.keys, tokens, command };
      const worker = new Worker(new URL(import.meta.url), { workerData: input });
      const outcome = new Promise<AttackOutcome>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      const until = Date.now() + seconds * 1000;
      const lat: number[] = [];
      while (Date.now() < until) {
        const t0 = nowMs();
        await victim.client.heartbeat({ running: [] });
        lat.push(nowMs() - t0);
        await sleep(100);
      }
      results[phase] = { victimHeartbeatMs: summarize(lat), attacker: await outcome };
      await worker.terminate();
    }
    victim.client.close();
    attacker.client.close();
    console.log(JSON.stringify({ seconds, concurrency, ...results }, null, 2));
    rmSync(logFile, { force: true }); // kept only when the run failed
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
