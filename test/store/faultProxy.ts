/**
 * A TCP proxy in the test process, between a client and a server, that can cut every connection
 * and refuse new ones, then let them through again: a database outage without stopping the
 * database other tests use.
 */
import net from 'node:net';

export interface FaultProxy {
  readonly port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Destroys every open connection and resets new ones until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const sockets = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get open() {
      return sockets.size / 2;
    },
    cut() {
      refusing = true;
      for (const s of sockets) s.resetAndDestroy();
    },
    restore() {
      refusing = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
