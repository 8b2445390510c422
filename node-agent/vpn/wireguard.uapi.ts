/**
 * Reads a WireGuard interface's state through its userspace API socket
 * (/var/run/wireguard/<if>.sock, served by wireguard-go): one `get=1` request on a Unix socket, no
 * process started. Bounded in time (timeoutMs) and size (the parser's limits).
 */
import net from 'node:net';
import { UapiParser, type UapiDevice } from './wireguard.uapi.parse.ts';

export const UAPI_SOCKET_DIR = '/var/run/wireguard';

export type UapiRead =
  | { ok: true; device: UapiDevice }
  /** No socket: no userspace interface of that name (a kernel one may exist). */
  | { ok: false; missing: true; error: string }
  | { ok: false; missing: false; error: string };

export function readUapi(ifname: string, o: { socketDir?: string; timeoutMs?: number } = {}): Promise<UapiRead> {
  const path = `${o.socketDir ?? UAPI_SOCKET_DIR}/${ifname}.sock`;
  return new Promise<UapiRead>((resolve) => {
    const parser = new UapiParser();
    const sock = net.connect(path);
    let settled = false;
    const finish = (r: UapiRead) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, missing: false, error: `no answer from ${path} within ${o.timeoutMs ?? 2000} ms` }), o.timeoutMs ?? 2000);
    sock.on('connect', () => sock.write('get=1\n\n'));
    sock.on('data', (chunk: Buffer) => {
      const r = parser.push(chunk);
      if (r.done) finish(r.ok ? { ok: true, device: r.device } : { ok: false, missing: false, error: r.error });
    });
    sock.on('end', () => {
      const r = parser.end();
      finish(r.done && r.ok ? { ok: true, device: r.device } : { ok: false, missing: false, error: r.done && !r.ok ? r.error : 'incomplete' });
    });
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, missing: err.code === 'ENOENT', error: err.message }));
  });
}
