/**
 * Runs inside the node agent's network namespace: 127.0.0.1:<port> there is relayed to a Unix
 * socket, where the bench's counting proxy listens and forwards to the control plane.
 * Usage: node bench/forward.ts <port> <unix-socket-path>
 */
import net from 'node:net';

const port = Number(process.argv[2]);
const path = process.argv[3]!;
net
  .createServer((c) => {
    const u = net.connect(path);
    c.pipe(u);
    u.pipe(c);
    const end = () => {
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  })
  .listen(port, '127.0.0.1');
