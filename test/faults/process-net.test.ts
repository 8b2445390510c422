/**
 * The process-level safety net (common/process-net.ts) of the three long-running programs:
 * `tether server`, the cluster agent and `tether-node agent`. An unhandled rejection or uncaught
 * exception, injected with the test-only TETHER_TEST_INJECT_FAULT, ends each of them with one
 * fatal pino line carrying the error under `err` and exit code 1: no silent death, no hang, no
 * raw stack on stderr in place of the (masked) log.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeArgs, removeDir, tempDir } from '../support/control-plane.ts';
import { jsonLines } from './support.ts';

const FAULTS = ['unhandled-rejection', 'uncaught-exception'] as const;
/** Programs still running when a test ends (one that did not exit): killed by afterEach. */
const running = new Set<ReturnType<typeof spawn>>();

/** Runs an entry point until it exits (mocha's timeout bounds it): exit code, stdout, stderr. */
function runToExit(entry: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, argv] = nodeArgs(entry, args);
  const proc = spawn(cmd, argv, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout, stderr })));
}

function assertNetCaught(r: { code: number | null; stdout: string; stderr: string }, fault: string, program: string): void {
  const fatal = jsonLines(r.stdout).filter((l) => l.level === 60 && /state is unknown/.test(String(l.msg)));
  assert.equal(fatal.length, 1, `${program}: one fatal line for the ${fault}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`);
  const err = fatal[0]!.err as { message?: string; stack?: string } | undefined;
  assert.match(String(err?.message), /fault injected by TETHER_TEST_INJECT_FAULT/, `${program}: the error is logged under err`);
  assert.match(String(fatal[0]!.msg), fault === 'unhandled-rejection' ? /^unhandled promise rejection/ : /^uncaught exception/);
  assert.equal(r.code, 1, `${program}: exit code 1 after the ${fault}`);
}

describe('faults: the process-level safety net', function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  let hang: net.Server;
  let hangPort = 0;
  const held: net.Socket[] = [];

  before(async () => {
    // A "Kubernetes API" that accepts connections and never answers: the cluster agent's start
    // waits on it, so the injected fault is the only way out.
    hang = net.createServer((s) => void held.push(s));
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    hangPort = (hang.address() as net.AddressInfo).port;
  });
  afterEach(() => {
    for (const p of running) p.kill('SIGKILL');
  });
  after(async () => {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => hang.close(() => r()));
    for (const d of dirs) removeDir(d);
  });

  for (const fault of FAULTS) {
    it(`tether server: an ${fault} is logged with err and exits 1`, async () => {
      const dir = tempDir();
      dirs.push(dir);
      const r = await runToExit('control-plane/cli/main.ts', ['server', '--data-dir', dir, '--listen', '127.0.0.1:0'], { TETHER_TEST_INJECT_FAULT: fault });
      assertNetCaught(r, fault, 'tether server');
    });

    it(`cluster agent: an ${fault} is logged with err (through its masked log) and exits 1`, async () => {
      const dir = tempDir();
      dirs.push(dir);
      writeFileSync(join(dir, 'ca.crt'), 'not used before the fault\n');
      const kubeconfig = join(dir, 'kubeconfig');
      writeFileSync(
        kubeconfig,
        `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:${hangPort}"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`,
      );
      const r = await runToExit('cluster-agent/daemon/main.ts', [], {
        TETHER_TEST_INJECT_FAULT: fault,
        TETHER_URL: 'https://127.0.0.1:1',
        TETHER_CA_FILE: join(dir, 'ca.crt'),
        TETHER_AGENT_NAMESPACE: 'tether',
        TETHER_WORK_DIR: join(dir, 'work'),
        KUBECONFIG: kubeconfig,
      });
      assert.match(r.stdout, /starting the cluster agent/, 'the agent was starting (waiting on the Kubernetes API)');
      assertNetCaught(r, fault, 'cluster agent');
    });

    it(`tether-node agent: an ${fault} is logged with err and exits 1`, async () => {
      const dir = tempDir();
      dirs.push(dir);
      mkdirSync(join(dir, 'state'));
      // A key and certificate the daemon can load (the control plane it dials is not there: it keeps retrying).
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=n1', '-days', '1', '-keyout', 'agent.key', '-out', 'agent.crt'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      copyFileSync(join(dir, 'agent.crt'), join(dir, 'ca.crt'));
      const config = join(dir, 'node.yaml');
      writeFileSync(
        config,
        [
          'nodeId: n1', 'agentId: a1', 'accountId: a1b2c', 'cluster: c01', 'server: https://127.0.0.1:1',
          'caFile: ca.crt', 'certFile: agent.crt', 'keyFile: agent.key', 'stateDir: state',
          'network: {manageVpn: false, wg0: {interface: tw0, listenPort: 51820}, wg1: {interface: tw1, listenPort: 51821}}', '',
        ].join('\n'),
      );
      const r = await runToExit('node-agent/cli/main.ts', ['agent', '--config', config], { TETHER_TEST_INJECT_FAULT: fault });
      assert.match(r.stdout, /node agent started/, 'the daemon was running');
      assertNetCaught(r, fault, 'tether-node agent');
    });
  }
});
