import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * The accept queue of a listening socket: how many connections the kernel completed that the
 * server has not accepted yet (`ss`'s Recv-Q on a LISTEN line), and its cap (Send-Q: the backlog
 * the server asked for, capped by net.core.somaxconn). Undefined when no such line.
 */
export function parseListenQueue(ssOutput: string, port: number): { queued: number; cap: number } | undefined {
  for (const line of ssOutput.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'LISTEN' || f.length < 4) continue;
    if (!f[3]!.endsWith(`:${port}`)) continue;
    const queued = Number(f[1]);
    const cap = Number(f[2]);
    if (Number.isSafeInteger(queued) && Number.isSafeInteger(cap)) return { queued, cap };
  }
  return undefined;
}

/** The kernel's count of connections dropped because a listening socket's accept queue was full (/proc/net/netstat, TcpExt ListenOverflows). */
export function parseListenOverflows(netstat: string): number | undefined {
  const lines = netstat.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i]!.startsWith('TcpExt:') || !lines[i + 1]!.startsWith('TcpExt:')) continue;
    const names = lines[i]!.trim().split(/\s+/);
    const values = lines[i + 1]!.trim().split(/\s+/);
    const k = names.indexOf('ListenOverflows');
    if (k > 0 && values[k] !== undefined && /^\d+$/.test(values[k]!)) return Number(values[k]);
  }
  return undefined;
}

export interface AcceptQueueSummary {
  /** Seconds sampled, and in how many of them the queue was at its cap. */
  seconds: number;
  fullSeconds: number;
  maxQueued: number;
  lastQueued: number | null;
  cap: number | null;
  /** Connections the kernel dropped for a full accept queue meanwhile (all of the machine's listening sockets). */
  listenOverflows: number | null;
}

/**
 * Samples a listening port's accept queue every second (issue 18: a control plane that falls behind
 * accepts one connection per pass over its ready sockets, and its queue fills: docs/performance.md,
 * "The 20,000-agent ramp that locks out its operator"). Linux only; null figures elsewhere.
 */
export class AcceptQueueWatch {
  private readonly timer: NodeJS.Timeout;
  private samples = 0;
  private full = 0;
  private max = 0;
  private last: number | null = null;
  private cap: number | null = null;
  private readonly overflows0 = readOverflows();
  private busy = false;

  private readonly port: number;

  constructor(port: number) {
    this.port = port;
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  private sample(): void {
    if (this.busy) return;
    this.busy = true;
    execFile('ss', ['-Hltn', `sport = :${this.port}`], { timeout: 2000 }, (err, stdout) => {
      this.busy = false;
      const q = err ? undefined : parseListenQueue(stdout, this.port);
      if (!q) return;
      this.samples++;
      this.last = q.queued;
      this.cap = q.cap;
      this.max = Math.max(this.max, q.queued);
      if (q.queued >= q.cap) this.full++;
    });
  }

  private summary: AcceptQueueSummary | undefined;

  /** Stops sampling; the same summary however often it is called. */
  stop(): AcceptQueueSummary {
    if (this.summary) return this.summary;
    clearInterval(this.timer);
    const o1 = readOverflows();
    this.summary = { seconds: this.samples, fullSeconds: this.full, maxQueued: this.max, lastQueued: this.last, cap: this.cap, listenOverflows: o1 !== undefined && this.overflows0 !== undefined ? o1 - this.overflows0 : null };
    return this.summary;
  }
}

function readOverflows(): number | undefined {
  try {
    return parseListenOverflows(readFileSync('/proc/net/netstat', 'utf8'));
  } catch {
    return undefined;
  }
}
