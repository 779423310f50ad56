/**
 * A TCP proxy in front of Redis that a test can sever (connections reset, new ones refused),
 * blackhole (connections stay open, nothing is forwarded: a hung Redis or a partition) and restore
 * (a healed partition: held bytes flow again).
 */
import net from 'node:net';

export interface FaultProxy {
  readonly port: number;
  /** Resets every connection and refuses new ones until restore(). */
  sever(): void;
  /** Stops forwarding in both directions; connections stay open. */
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: net.Socket;
  upstream: net.Socket | null;
}

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  let mode: 'pass' | 'severed' | 'blackhole' = 'pass';
  const pairs = new Set<Pair>();

  const link = (pair: Pair) => {
    const upstream = net.connect(target.port, target.host);
    pair.upstream = upstream;
    upstream.on('error', () => pair.client.destroy());
    upstream.on('close', () => pair.client.destroy());
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
    pair.client.resume();
  };
  const hold = (pair: Pair) => {
    pair.client.unpipe();
    pair.upstream?.unpipe();
    pair.client.pause();
    pair.upstream?.pause();
  };
  const release = (pair: Pair) => {
    if (pair.upstream === null) return link(pair);
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
    pair.client.resume();
    pair.upstream.resume();
  };

  const server = net.createServer((client) => {
    client.on('error', () => undefined);
    if (mode === 'severed') {
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: null };
    pairs.add(pair);
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'pass') link(pair);
    else client.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;

  return {
    port: address.port,
    sever() {
      mode = 'severed';
      for (const pair of pairs) {
        pair.client.resetAndDestroy();
        pair.upstream?.destroy();
      }
      pairs.clear();
    },
    blackhole() {
      mode = 'blackhole';
      for (const pair of pairs) hold(pair);
    },
    restore() {
      const was = mode;
      mode = 'pass';
      if (was === 'blackhole') for (const pair of pairs) release(pair);
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
