/** A counting TCP relay: everything the node agent sends and receives crosses it (TLS records included). */
import net from 'node:net';
import { rmSync } from 'node:fs';

export class CountingProxy {
  up = 0;
  down = 0;
  connections = 0;
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  async listen(targetPort: number, where: { port?: number; path?: string }[]): Promise<void> {
    for (const w of where) {
      const s = net.createServer((client) => {
        this.connections++;
        const upstream = net.connect(targetPort, '127.0.0.1');
        this.sockets.add(client).add(upstream);
        client.on('data', (d: Buffer) => {
          this.up += d.length;
        });
        upstream.on('data', (d: Buffer) => {
          this.down += d.length;
        });
        client.pipe(upstream);
        upstream.pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
          this.sockets.delete(client);
          this.sockets.delete(upstream);
        };
        client.on('error', end).on('close', end);
        upstream.on('error', end).on('close', end);
      });
      if (w.path) rmSync(w.path, { force: true });
      await new Promise<void>((r, j) => {
        s.once('error', j);
        if (w.path) s.listen(w.path, () => r());
        else s.listen(w.port, '127.0.0.1', () => r());
      });
      this.servers.push(s);
    }
  }

  reset(): void {
    this.up = 0;
    this.down = 0;
    this.connections = 0;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
