/**
 * What the node agent's daemon loads (docs/node-agent.md, Footprint): the deployed bundle
 * (bin/tether-node, dist/ built by scripts/build.sh) run as a process against a real control
 * plane, with a module hook (module.registerHooks, through NODE_OPTIONS=--import) that writes down
 * every file it loads; the build's metafile (dist/tether-node.meta.json) says which sources each
 * chunk holds. While it idles (registered, heartbeating, polling) the daemon loads no classic zod
 * (only zod/mini), no command schemas (common/specs.ts, the cluster agent's among them), no pino
 * (journal-logger.ts) and no command code; a claimed command loads its own chunks, and still no classic zod nor specs.ts.
 * Node's own list of loaded built-ins (process.moduleLoadList) shows the built-ins' lazy parts an
 * ES import would have run (worker_threads, webcrypto, parseArgs) are not loaded either.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { AgentView, CommandView } from '../../common/wire.ts';
import { REPO_ROOT, eventually, removeDir, startTestControlPlane, tempDir, type TestControlPlane } from '../support/control-plane.ts';
import { killAndWait, runNodeCli, startDaemon, type Daemon } from './support.ts';

interface Metafile {
  outputs: Record<string, { inputs: Record<string, unknown>; imports: { path: string; kind: string }[]; entryPoint?: string }>;
}

/** Sources no daemon should load unless a command needs them, and sources no node agent needs at all. */
const NEVER_IDLE = [/node_modules\/zod\/v4\/classic\//, /node_modules\/zod\/v4\/locales\/(?!en\.js)/, /^common\/specs\.ts$/, /^common\/wire\.ts$/, /^cluster-agent\//, /node_modules\/commander\//, /node_modules\/node-forge\//, /^node-agent\/(preflight|install|register)\//, /^node-agent\/cli\/commands\.ts$/, /^common\/node-specs\.ts$/, /node_modules\/(pino|thread-stream|sonic-boom|yaml)\//];
/** The Node and V8 flags `bin/tether-node agent` runs the daemon with, in order. */
const DAEMON_FLAGS = ['--max-semi-space-size=1', '--lite-mode'];
/** Node built-ins an idle daemon does not load (the ES facades of node:util, node:crypto and node:net did). */
const NEVER_IDLE_BUILTINS = ['NativeModule worker_threads', 'NativeModule internal/worker', 'NativeModule internal/crypto/webcrypto', 'NativeModule internal/util/parse_args/parse_args', 'NativeModule internal/util/diff', 'NativeModule internal/blocklist'];
const NEVER = [/node_modules\/zod\/v4\/classic\//, /^common\/specs\.ts$/, /^cluster-agent\//];

function readMeta(): Map<string, string[]> {
  const meta = JSON.parse(readFileSync(join(REPO_ROOT, 'dist/tether-node.meta.json'), 'utf8')) as Metafile;
  return new Map(Object.entries(meta.outputs).map(([out, o]) => [basename(out), Object.keys(o.inputs)]));
}

/** The sources in the bundle files a daemon loaded (the hook's list of file URLs). */
function loadedSources(logFile: string, chunks: Map<string, string[]>): { files: string[]; sources: Set<string> } {
  const files = [...new Set(readFileSync(logFile, 'utf8').split('\n').filter((u) => u.startsWith('file:') && u.includes('/dist/')).map((u) => basename(new URL(u).pathname)))];
  const sources = new Set<string>();
  for (const f of files) {
    const inputs = chunks.get(f);
    assert.ok(inputs, `${f} is not in dist/tether-node.meta.json (a stale build?)`);
    for (const i of inputs) sources.add(i);
  }
  return { files, sources };
}

const offending = (sources: Set<string>, patterns: RegExp[]) => [...sources].filter((s) => patterns.some((p) => p.test(s)));

describe('node agent: what the daemon loads (bundle)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let dir: string;
  let daemon: Daemon | undefined;

  before(async () => {
    t = await startTestControlPlane();
    await t.createCluster('nb1');
    dir = tempDir('tether-node-bundle-');
  });
  after(async () => {
    if (daemon) await killAndWait(daemon);
    await t.close();
    removeDir(t.dataDir);
    removeDir(dir);
  });

  it('no chunk the daemon can load reaches classic zod, the command schemas or the cluster agent', () => {
    const meta = JSON.parse(readFileSync(join(REPO_ROOT, 'dist/tether-node.meta.json'), 'utf8')) as Metafile;
    const byEntry = (e: string) => Object.keys(meta.outputs).find((k) => meta.outputs[k]!.entryPoint === e);
    // From the daemon's module and the modules it imports when the VPN syncs or a command comes,
    // every chunk reachable by static or dynamic import (the CLI's commands are not: main.ts only).
    const roots = ['node-agent/daemon/agent.ts', 'node-agent/vpn/vpn.sync.ts', 'common/node-specs.ts', 'node-agent/install/install.command.ts', 'node-agent/preflight/preflight.run.ts'].map((e) => {
      const out = byEntry(e);
      assert.ok(out, `no chunk has ${e} as its entry point (not imported lazily any more?)`);
      return out;
    });
    const seen = new Set<string>();
    for (const stack = [...roots]; stack.length; ) {
      const o = stack.pop()!;
      if (seen.has(o)) continue;
      seen.add(o);
      for (const i of meta.outputs[o]!.imports) if (meta.outputs[i.path]) stack.push(i.path);
    }
    const sources = new Set([...seen].flatMap((o) => Object.keys(meta.outputs[o]!.inputs)));
    assert.ok(sources.has('node-agent/daemon/agent.ts') && sources.has('common/vpn.ts'), 'the walk found the daemon');
    assert.deepEqual(offending(sources, NEVER), []);
  });

  it('idle: heartbeats and polls with zod/mini only, no command schemas or command code; a command loads its own', async () => {
    const config = join(dir, 'config.yaml');
    const token = await t.bootstrapToken('nb1', 'node', false);
    const r = await runNodeCli(['register', '--token', token, '--aid', t.aid, '--control-plane', '0', '--server', t.url, '--ca-file', join(t.dataDir, 'ca.crt'), '--config', config, '--name', 'b1', '--no-vpn', '--heartbeat-interval-ms', '200']);
    assert.equal(r.code, 0, r.stderr);
    const hook = join(dir, 'hook.mjs');
    const logFile = join(dir, 'loaded.txt');
    const builtinsFile = join(dir, 'builtins.txt');
    writeFileSync(logFile, '');
    // The hook takes node:fs through getBuiltinModule (an ES import of a built-in runs its lazy
    // getters) and writes down Node's own list of loaded built-ins (process.moduleLoadList) as it grows.
    writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';\nconst { appendFileSync, writeFileSync } = process.getBuiltinModule('node:fs');\n` +
        `registerHooks({ load(url, context, next) { appendFileSync(${JSON.stringify(logFile)}, url + '\\n'); return next(url, context); } });\n` +
        `let n = 0;\nsetInterval(() => { if (process.moduleLoadList.length !== n) { n = process.moduleLoadList.length; writeFileSync(${JSON.stringify(builtinsFile)}, process.moduleLoadList.join('\\n')); } }, 100).unref();\n`,
    );
    daemon = startDaemon(config, { env: { NODE_OPTIONS: `--import=${hook}` } });
    const agents = async () => (await t.admin.request<{ agents: AgentView[] }>('GET', '/v1/agents?cluster=nb1')).body.agents;
    await eventually(async () => (await agents())[0]?.status === 'healthy', 20_000, 'a heartbeat');
    // bin/tether-node execs node with the daemon's memory settings (docs/performance.md, issue 18).
    const argv = readFileSync(`/proc/${daemon.proc.pid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(argv.slice(1, 1 + DAEMON_FLAGS.length), DAEMON_FLAGS, argv.join(' '));
    const environ = readFileSync(`/proc/${daemon.proc.pid}/environ`, 'utf8').split('\0');
    for (const e of ['MALLOC_ARENA_MAX=2', 'MALLOC_TRIM_THRESHOLD_=131072']) assert.ok(environ.includes(e), e);
    // A few more heartbeats and the held poll: whatever idling loads is loaded by now.
    const seen = (await agents())[0]!.lastHeartbeatAt;
    await eventually(async () => (await agents())[0]!.lastHeartbeatAt !== seen, 10_000, 'a later heartbeat');
    await new Promise((res) => setTimeout(res, 1000));

    const chunks = readMeta();
    const idle = loadedSources(logFile, chunks);
    assert.ok(idle.files.includes('tether-node.mjs'), `the hook saw the daemon's files: ${idle.files.join(', ')}`);
    assert.deepEqual(offending(idle.sources, NEVER_IDLE), [], 'loaded by an idle daemon');
    for (const needed of ['node-agent/daemon/agent.ts', 'common/agent/runtime.ts', 'common/agent-wire.ts']) assert.ok(idle.sources.has(needed), `the idle daemon runs ${needed}`);
    assert.ok([...idle.sources].some((s) => s.includes('node_modules/zod/v4/mini/')), 'zod/mini validates the answers');
    // Built-ins come through process.getBuiltinModule (scripts/build.sh), not ES imports, whose
    // facades would run every lazy getter: node:util's load worker_threads and parseArgs, node:crypto's webcrypto.
    const builtins = readFileSync(builtinsFile, 'utf8').split('\n');
    assert.ok(builtins.includes('NativeModule http2') && builtins.includes('NativeModule child_process'), `the list is the daemon's: ${builtins.length} entries`);
    assert.deepEqual(builtins.filter((b) => NEVER_IDLE_BUILTINS.includes(b)), [], 'built-ins loaded by an idle daemon');

    // A command: its spec schema (zod/mini) and its code are loaded now, and still nothing of NEVER.
    const id = (await t.admin.request<{ id: number }>('POST', '/v1/commands', { target: { cluster: 'nb1', node: 'b1' }, type: 'install', spec: { dryRun: true } })).body.id;
    const done = await eventually(async () => {
      const c = (await t.admin.request<CommandView>('GET', `/v1/commands/${id}`)).body;
      return ['succeeded', 'failed'].includes(c.state) ? c : undefined;
    }, 30_000, 'the install command');
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const after = loadedSources(logFile, chunks);
    for (const needed of ['common/node-specs.ts', 'node-agent/install/install.command.ts']) assert.ok(after.sources.has(needed), `a claimed install loads ${needed}`);
    assert.deepEqual(offending(after.sources, NEVER), [], 'loaded by a command');
  });
});
