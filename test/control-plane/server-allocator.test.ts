/**
 * `bin/tether server` runs the control plane on mimalloc when it is installed (issue 18: glibc's
 * malloc held ~13-15 KB more per idle agent connection, docs/performance.md), glibc's malloc with
 * TETHER_MALLOC=system, and refuses any other value. Checked on the real process: the libraries
 * mapped in /proc/<pid>/maps. CI installs Debian's libmimalloc2.0 (.ci/run). And its V8 flags take
 * effect: the semi-space size bin/tether asks for is the one V8 resolves from the real process's
 * flags (an implication such as --optimize-for-size's 1 MB would silently override it), and it is
 * the 16 MB measured with ~20,000 agents held. V8's helper threads (concurrent marking) run level
 * with the event loop unless TETHER_GC_THREADS_NICE puts them below it (control-plane/gc-threads.ts), or refuses.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { getPriority } from 'node:os';
import { REPO_ROOT, freePort, removeDir, stopProcess, tempDir } from '../support/control-plane.ts';

const MIMALLOC = ['/usr/lib/x86_64-linux-gnu/libmimalloc.so.2', '/usr/lib/aarch64-linux-gnu/libmimalloc.so.2'];

/** Starts bin/tether server; resolves once ready (or with its exit code and output if it stops first). */
function startBin(dataDir: string, port: number, env: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; ready: boolean; code: number | null; output: string }> {
  const proc = spawn('bash', [join(REPO_ROOT, 'bin/tether'), 'server', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, TETHER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve) => {
    const seen = (d: Buffer) => {
      output += d;
      if (output.includes('control plane ready')) resolve({ proc, ready: true, code: null, output });
    };
    proc.stdout!.on('data', seen);
    proc.stderr!.on('data', seen);
    proc.on('close', (code) => resolve({ proc, ready: false, code, output }));
  });
}

/** Each thread of the process: its name and nice value (/proc/<pid>/task/<tid>/stat, field 19). */
function threads(pid: number): { tid: number; name: string; nice: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // from field 3 (state) on
    return { tid: Number(tid), name, nice: Number(fields[19 - 3]) };
  });
}

/** The shared libraries the process has mapped. bin/tether execs node, so the pid is the server's. */
function mapped(pid: number): string {
  return readFileSync(`/proc/${pid}/maps`, 'utf8');
}

describe('control plane memory allocator (bin/tether server)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let proc: ChildProcess | undefined;

  before(function () {
    assert.ok(MIMALLOC.some((f) => existsSync(f)), 'libmimalloc.so.2 is not installed: apt-get install libmimalloc2.0 (.ci/run installs it)');
  });
  beforeEach(() => {
    dataDir = tempDir();
  });
  afterEach(async () => {
    if (proc) await stopProcess(proc);
    proc = undefined;
    removeDir(dataDir);
  });

  it('runs on mimalloc by default', async () => {
    const r = await startBin(dataDir, await freePort(), { LD_PRELOAD: '', TETHER_MALLOC: '' });
    proc = r.proc;
    assert.ok(r.ready, r.output);
    assert.match(mapped(r.proc.pid!), /libmimalloc\.so\.2/);
  });

  it('keeps glibc malloc with TETHER_MALLOC=system', async () => {
    const r = await startBin(dataDir, await freePort(), { LD_PRELOAD: '', TETHER_MALLOC: 'system' });
    proc = r.proc;
    assert.ok(r.ready, r.output);
    assert.doesNotMatch(mapped(r.proc.pid!), /libmimalloc/);
  });

  it("runs with V8 flags that take effect: the semi-space V8 gives the server is the one bin/tether asks for", async () => {
    const r = await startBin(dataDir, await freePort(), { LD_PRELOAD: '', TETHER_MALLOC: '', NODE_OPTIONS: '' });
    proc = r.proc;
    assert.ok(r.ready, r.output);
    // The real process's command line: node, its flags, then the entry point (bin/tether execs node).
    const argv = readFileSync(`/proc/${r.proc.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const entry = argv.findIndex((a) => a.endsWith('control-plane/cli/main.ts'));
    assert.ok(entry > 0, argv.join(' '));
    const flags = argv.slice(1, entry);
    const asked = flags.map((f) => /^--max-semi-space-size=(\d+)$/.exec(f)?.[1]).find(Boolean);
    assert.ok(asked, `no --max-semi-space-size in ${flags.join(' ')}`);
    // What V8 makes of those flags (implications included): --optimize-for-size, for one, sets the
    // semi-space to 1 MB whatever --max-semi-space-size says (docs/performance.md, issue 18).
    const v8 = spawnSync(argv[0]!, [...flags, '--print-flag-values', '-e', '0'], { encoding: 'utf8' });
    assert.equal(v8.status, 0, v8.stderr);
    const effective = /^--max-semi-space-size=(\d+)$/m.exec(v8.stdout)?.[1];
    assert.equal(effective, asked, `V8 runs the server's flags (${flags.join(' ')}) with --max-semi-space-size=${effective}`);
    // With thousands of agents held, 2 MB semi-spaces promoted every heartbeat still in flight and
    // had V8 mark the held agents' old generation every ~3 s (docs/performance.md, "Heartbeats with
    // ~20,000 held (issue 18)"): the young generation is 16 MB.
    assert.equal(Number(effective), 16, `the server's semi-space is ${effective} MB, not the 16 MB measured for held agents`);
  });

  it("runs V8's helper threads (concurrent marking) level with the event loop by default; TETHER_GC_THREADS_NICE=10 puts them 10 steps below it", async () => {
    // Relative to the nice value the server was started with (this process's, inherited).
    const base = getPriority();
    const level = await startBin(dataDir, await freePort(), { NODE_OPTIONS: '', TETHER_GC_THREADS_NICE: '' });
    proc = level.proc;
    assert.ok(level.ready, level.output);
    const byDefault = threads(level.proc.pid!);
    assert.ok(byDefault.filter((t) => /^V8Worker|^DelayedTaskSche/.test(t.name)).length >= 2, `V8's helper threads: ${JSON.stringify(byDefault)}`);
    // A saturated server with its helpers below the loop did not catch up (docs/performance.md).
    for (const t of byDefault) assert.equal(t.nice, base, JSON.stringify(t));
    await stopProcess(level.proc);
    const r = await startBin(dataDir, await freePort(), { NODE_OPTIONS: '', TETHER_GC_THREADS_NICE: '10' });
    proc = r.proc;
    assert.ok(r.ready, r.output);
    const all = threads(r.proc.pid!);
    const helpers = all.filter((t) => /^V8Worker|^DelayedTaskSche/.test(t.name));
    assert.ok(helpers.length >= 2, `V8's helper threads: ${JSON.stringify(all)}`);
    for (const t of helpers) assert.equal(t.nice, Math.min(19, base + 10), JSON.stringify(t));
    const main = all.find((t) => t.tid === r.proc.pid);
    assert.equal(main?.nice, base, 'the event loop keeps its priority');
    // Every other thread too (libuv's pool syncs the WAL; the checkpoint worker copies it).
    for (const t of all.filter((x) => !helpers.includes(x))) assert.equal(t.nice, base, JSON.stringify(t));
  });

  it('refuses a TETHER_GC_THREADS_NICE outside 0-19 with a message and a non-zero exit', async () => {
    const r = await startBin(dataDir, await freePort(), { TETHER_GC_THREADS_NICE: '20' });
    assert.equal(r.ready, false);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /TETHER_GC_THREADS_NICE must be a whole number from 0 to 19 \(got "20"\)/);
  });

  it('refuses another TETHER_MALLOC value with a message and exit 2', async () => {
    const r = await startBin(dataDir, await freePort(), { TETHER_MALLOC: 'jemalloc' });
    assert.equal(r.ready, false);
    assert.equal(r.code, 2);
    assert.match(r.output, /TETHER_MALLOC must be mimalloc or system \(got jemalloc\)/);
  });
});
