// A throwaway Kubernetes control plane for tests ("envtest"): a real etcd + kube-apiserver from the
// pinned toolchain (test/toolchain/install.sh), on loopback with random ports and a temp dir.
// No controllers, scheduler or nodes run: only the API server (RBAC on, admin = system:masters).
//
//   const env = await startEnvtest();
//   ... use env.kubeconfigPath / env.url + env.caPem + env.token (or kubeRequest(env, ...)) ...
//   await env.stop();
//
// Only Node built-ins are used; certificates and keys are made with the `openssl` CLI.
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { toolPath } from './toolchain.ts';

const execFileP = promisify(execFile);

export interface EnvtestOptions {
  /** Overall deadline for etcd + apiserver to become ready (default 90 s). */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags (appended; later flags win). */
  apiserverArgs?: string[];
  /** Extra etcd flags. */
  etcdArgs?: string[];
  /** Forward etcd/apiserver output to this process's stderr (also: TETHER_ENVTEST_VERBOSE=1). */
  verbose?: boolean;
  /** Keep the temp dir after stop() (for debugging). */
  keepTempDir?: boolean;
  /** Keep the ServiceAccount admission plugin on (Pods get token volumes; needs controllers running). */
  serviceAccountAdmission?: boolean;
}

export interface Envtest {
  /** https://127.0.0.1:<port> */
  url: string;
  /** Admin kubeconfig written into the temp dir. */
  kubeconfigPath: string;
  kubeconfigYaml: string;
  /** CA that signed the apiserver serving cert and the admin client cert. */
  caPem: string;
  /** Static bearer token of the admin user (member of system:masters). */
  token?: string;
  /** Admin client certificate/key (O=system:masters), an alternative to the token. */
  clientCertPem: string;
  clientKeyPem: string;
  /** etcd client URL (http://127.0.0.1:<port>). */
  etcdUrl: string;
  tempDir: string;
  /** Kills both processes (whole process groups) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Bounded ring of the last output of a child process, for error messages. */
class OutputTail {
  private chunks: string[] = [];
  private size = 0;
  private readonly limit: number;
  constructor(limit = 64 * 1024) {
    this.limit = limit;
  }
  push(s: string): void {
    this.chunks.push(s);
    this.size += s.length;
    while (this.size > this.limit && this.chunks.length > 1) {
      this.size -= (this.chunks.shift() as string).length;
    }
  }
  tail(lines = 40): string {
    return this.chunks.join('').split('\n').slice(-lines - 1).join('\n').trimEnd();
  }
}

interface Proc {
  name: string;
  child: ChildProcess;
  out: OutputTail;
  exited: Promise<void>;
  exitInfo: string | undefined;
}

function startProcess(name: string, bin: string, args: string[], verbose: boolean): Proc {
  // detached => own process group, so stop() can kill the group and nothing leaks.
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new OutputTail();
  const proc: Proc = { name, child, out, exited: Promise.resolve(), exitInfo: undefined };
  const onData = (buf: Buffer): void => {
    const s = buf.toString('utf8');
    out.push(s);
    if (verbose) process.stderr.write(s.replace(/^(?=.)/gm, `[${name}] `));
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  // Don't let a forgotten envtest keep the test process alive: the 'exit' hook in startOnce
  // kills the process groups when Node exits.
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  proc.exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      proc.exitInfo = `failed to start: ${err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      proc.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });
  return proc;
}

async function killGroup(proc: Proc, graceMs = 5000): Promise<void> {
  const pid = proc.child.pid;
  if (pid === undefined || proc.exitInfo !== undefined) {
    await proc.exited;
    return;
  }
  const signalGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      // group already gone
    }
  };
  signalGroup('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    proc.exited.then(() => false),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), graceMs);
    }),
  ]);
  if (timer) clearTimeout(timer);
  if (timedOut) {
    signalGroup('SIGKILL');
    await proc.exited;
  }
  // Also reap anything the child may have left in its group.
  signalGroup('SIGKILL');
}

async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not allocate a free port'))));
    });
  });
}

/** Distinct free loopback ports (small race window between probe and use; startEnvtest retries). */
async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileP('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

interface Pki {
  caPem: string;
  clientCertPem: string;
  clientKeyPem: string;
}

/** CA, apiserver serving cert, admin client cert (O=system:masters), service-account key pair. */
async function makePki(dir: string): Promise<Pki> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tether-envtest-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const sans = [
    'IP:127.0.0.1', 'IP:10.0.0.1', 'DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
  ].join(',');
  await Promise.all([
    openssl(
      ['req', '-x509', ...ec, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'apiserver.key', '-out', 'apiserver.crt',
        '-days', '2', '-subj', '/CN=kube-apiserver', '-addext', `subjectAltName=${sans}`,
        '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature',
        '-addext', 'extendedKeyUsage=serverAuth'],
      dir,
    ),
    openssl(
      ['req', '-x509', ...ec, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'admin.key', '-out', 'admin.crt',
        '-days', '2', '-subj', '/O=system:masters/CN=tether-envtest-admin',
        '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature',
        '-addext', 'extendedKeyUsage=clientAuth'],
      dir,
    ),
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'sa.key'], dir).then(() =>
      openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir),
    ),
  ]);
  const [caPem, clientCertPem, clientKeyPem] = await Promise.all([
    readFile(join(dir, 'ca.crt'), 'utf8'),
    readFile(join(dir, 'admin.crt'), 'utf8'),
    readFile(join(dir, 'admin.key'), 'utf8'),
  ]);
  return { caPem, clientCertPem, clientKeyPem };
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

function kubeconfigYaml(url: string, pki: Pki, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: envtest',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${b64(pki.caPem)}`,
    'users:',
    '- name: envtest-admin',
    '  user:',
    `    token: ${token}`,
    `    client-certificate-data: ${b64(pki.clientCertPem)}`,
    `    client-key-data: ${b64(pki.clientKeyPem)}`,
    'contexts:',
    '- name: envtest',
    '  context:',
    '    cluster: envtest',
    '    user: envtest-admin',
    '    namespace: default',
    'current-context: envtest',
    '',
  ].join('\n');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One GET; resolves with status + body, never rejects (status 0 = connection error). */
function probe(url: string, opts: { ca?: string; token?: string; timeoutMs: number }): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const headers: Record<string, string> = {};
    if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      { method: 'GET', headers, ca: opts.ca, timeout: opts.timeoutMs, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (e) => resolve({ status: 0, body: e.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

class StartError extends Error {
  readonly portInUse: boolean;
  constructor(message: string, portInUse: boolean) {
    super(message);
    this.name = 'EnvtestStartError';
    this.portInUse = portInUse;
  }
}

/** Polls `url` until `ok(result)` or the deadline; fails fast if `proc` exits. */
async function waitFor(
  what: string,
  proc: Proc,
  url: string,
  deadline: number,
  ok: (r: { status: number; body: string }) => boolean,
  auth: { ca?: string; token?: string },
): Promise<void> {
  let last = { status: 0, body: '' };
  for (;;) {
    if (proc.exitInfo !== undefined) {
      const tail = proc.out.tail();
      throw new StartError(
        `envtest: ${proc.name} ${proc.exitInfo} while waiting for ${what} to become ready. Last output:\n${tail}`,
        /address already in use/i.test(tail),
      );
    }
    last = await probe(url, { ...auth, timeoutMs: 2000 });
    if (ok(last)) return;
    if (Date.now() > deadline) {
      throw new StartError(
        `envtest: ${what} not ready at ${url} before the deadline (last: HTTP ${last.status} ${last.body.slice(0, 2000)}).\n` +
          `Last ${proc.name} output:\n${proc.out.tail()}`,
        false,
      );
    }
    await sleep(150);
  }
}

async function startOnce(opts: EnvtestOptions): Promise<Envtest> {
  const verbose = opts.verbose ?? process.env['TETHER_ENVTEST_VERBOSE'] === '1';
  const deadline = Date.now() + (opts.startTimeoutMs ?? 90_000);
  const etcdBin = toolPath('etcd');
  const apiserverBin = toolPath('kube-apiserver');

  const tempDir = await mkdtemp(join(tmpdir(), 'tether-envtest-'));
  const procs: Proc[] = [];
  let stopped = false;
  // Last-resort cleanup if the test process exits without calling stop().
  const onExit = (): void => {
    for (const p of procs) {
      if (p.child.pid !== undefined && p.exitInfo === undefined) {
        try {
          process.kill(-p.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (!opts.keepTempDir) rmSync(tempDir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // apiserver first (it would otherwise log etcd connection errors), then etcd.
    for (const p of [...procs].reverse()) await killGroup(p);
    process.removeListener('exit', onExit);
    if (!opts.keepTempDir) await rm(tempDir, { recursive: true, force: true });
  };

  try {
    const token = randomBytes(24).toString('hex');
    const [pki, [etcdClientPort, etcdPeerPort, apiPort]] = await Promise.all([makePki(tempDir), freePorts(3)]);
    await writeFile(join(tempDir, 'tokens.csv'), `${token},tether-envtest-admin,${randomUUID()},"system:masters"\n`, {
      mode: 0o600,
    });

    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startProcess(
      'etcd',
      etcdBin,
      [
        '--name=envtest',
        `--data-dir=${join(tempDir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=envtest=${peerUrl}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync=true',
        '--log-level=warn',
        ...(opts.etcdArgs ?? []),
      ],
      verbose,
    );
    procs.push(etcd);
    await waitFor('etcd', etcd, `${etcdUrl}/health`, deadline, (r) => r.status === 200 && /"health":\s*"true"/.test(r.body), {});

    const url = `https://127.0.0.1:${apiPort}`;
    const apiserver = startProcess(
      'kube-apiserver',
      apiserverBin,
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(tempDir, 'apiserver-certs')}`,
        `--tls-cert-file=${join(tempDir, 'apiserver.crt')}`,
        `--tls-private-key-file=${join(tempDir, 'apiserver.key')}`,
        `--client-ca-file=${join(tempDir, 'ca.crt')}`,
        `--token-auth-file=${join(tempDir, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        '--anonymous-auth=false',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${join(tempDir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(tempDir, 'sa.key')}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        ...(opts.serviceAccountAdmission ? [] : ['--disable-admission-plugins=ServiceAccount']),
        '--allow-privileged=true',
        '--enable-priority-and-fairness=false',
        '--profiling=false',
        '--v=0',
        ...(opts.apiserverArgs ?? []),
      ],
      verbose,
    );
    procs.push(apiserver);
    await waitFor('kube-apiserver', apiserver, `${url}/readyz`, deadline, (r) => r.status === 200 && r.body.trim() === 'ok', {
      ca: pki.caPem,
      token,
    });

    const yaml = kubeconfigYaml(url, pki, token);
    const kubeconfigPath = join(tempDir, 'kubeconfig.yaml');
    await writeFile(kubeconfigPath, yaml, { mode: 0o600 });
    return {
      url,
      kubeconfigPath,
      kubeconfigYaml: yaml,
      caPem: pki.caPem,
      token,
      clientCertPem: pki.clientCertPem,
      clientKeyPem: pki.clientKeyPem,
      etcdUrl,
      tempDir,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Starts etcd + kube-apiserver; resolves once /readyz is ok. Always call stop() (e.g. in `after`). */
export async function startEnvtest(opts: EnvtestOptions = {}): Promise<Envtest> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      // A probed-free port can be grabbed by someone else before etcd/apiserver binds it: retry.
      if (err instanceof StartError && err.portInUse && attempt < 3) continue;
      throw err;
    }
  }
}

export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
  text: string;
}

/**
 * Minimal authenticated REST call against an envtest (or any) apiserver using its CA and token
 * (falls back to the client certificate). JSON in, JSON out when the response is JSON.
 */
export function kubeRequest<T = unknown>(
  env: Pick<Envtest, 'url' | 'caPem' | 'token' | 'clientCertPem' | 'clientKeyPem'>,
  method: string,
  path: string,
  body?: unknown,
  opts: { contentType?: string; timeoutMs?: number } = {},
): Promise<KubeResponse<T>> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const useToken = env.token !== undefined && env.token !== '';
    if (useToken) headers['authorization'] = `Bearer ${env.token}`;
    const req = httpsRequest(
      new URL(path, env.url),
      {
        method,
        headers,
        ca: env.caPem,
        cert: useToken ? undefined : env.clientCertPem,
        key: useToken ? undefined : env.clientKeyPem,
        timeout: opts.timeoutMs ?? 30_000,
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('error', reject);
        res.on('end', () => {
          let parsed: unknown = text;
          if (/json/.test(res.headers['content-type'] ?? '') && text !== '') {
            try {
              parsed = JSON.parse(text);
            } catch {
              // leave as text
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
