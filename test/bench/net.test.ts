/**
 * The bench's reading of a listening socket's accept queue (bench/lib/net.ts): `ss` lines and the
 * kernel's ListenOverflows counter, parsed from what this machine prints, and the watch on a real
 * listening socket whose server does not accept.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { AcceptQueueWatch, parseListenOverflows, parseListenQueue } from '../../bench/lib/net.ts';

describe('bench: the accept queue of a listening socket', () => {
  it('reads Recv-Q and Send-Q of the LISTEN line for the port, and nothing else', () => {
    const ss = ['LISTEN 4097   4096       127.0.0.1:39891      0.0.0.0:*', 'LISTEN 0      128          0.0.0.0:2024       0.0.0.0:*', 'LISTEN 3 511 [::]:39891 [::]:*'].join('\n');
    assert.deepEqual(parseListenQueue(ss, 39891), { queued: 4097, cap: 4096 });
    assert.deepEqual(parseListenQueue(ss, 2024), { queued: 0, cap: 128 });
    assert.equal(parseListenQueue(ss, 3989), undefined, 'a port that only ends like another');
    assert.equal(parseListenQueue('ESTAB 0 0 127.0.0.1:39891 127.0.0.1:5000', 39891), undefined);
    assert.equal(parseListenQueue('', 39891), undefined);
    assert.equal(parseListenQueue('LISTEN x 4096 127.0.0.1:39891 0.0.0.0:*', 39891), undefined);
  });

  it('reads TcpExt ListenOverflows from /proc/net/netstat', () => {
    const netstat = ['TcpExt: SyncookiesSent ListenOverflows ListenDrops', 'TcpExt: 0 268805 268805', 'IpExt: InNoRoutes', 'IpExt: 0'].join('\n');
    assert.equal(parseListenOverflows(netstat), 268805);
    assert.equal(parseListenOverflows('TcpExt: ListenDrops\nTcpExt: 5'), undefined);
    assert.equal(parseListenOverflows(''), undefined);
  });

  it('sees the queue of a real listening socket fill while its server does not accept', async function () {
    this.timeout(30_000);
    // A server whose event loop is blocked after listen: the kernel completes connections into its
    // queue (backlog 4: at most 5 queued) and nobody accepts them.
    const child = spawn(process.execPath, ['-e', "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 4 }, function () { console.log(this.address().port); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })"], { stdio: ['ignore', 'pipe', 'inherit'] });
    const clients: net.Socket[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout!.once('data', (d: Buffer) => resolve(Number(`${d}`.trim())));
        child.once('exit', (code) => reject(new Error(`the listening child exited (${code})`)));
      });
      const watch = new AcceptQueueWatch(port);
      for (let i = 0; i < 10; i++) {
        const c = net.connect(port, '127.0.0.1');
        c.on('error', () => {});
        clients.push(c);
      }
      await new Promise((r) => setTimeout(r, 3500));
      const q = watch.stop();
      assert.equal(q.cap, 4, JSON.stringify(q));
      assert.equal(q.maxQueued, 5, JSON.stringify(q));
      assert.equal(q.lastQueued, 5, JSON.stringify(q));
      assert.ok(q.seconds >= 2 && q.fullSeconds >= 2, JSON.stringify(q));
      assert.ok(q.listenOverflows === null || q.listenOverflows >= 0, JSON.stringify(q));
      assert.deepEqual(watch.stop(), q, 'the same summary when asked again');
    } finally {
      for (const c of clients) c.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    }
  });
});
