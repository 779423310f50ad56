/**
 * One OpenAI base URL in front of several fake providers, routed by path, for an engine that takes
 * a single OPENAI_BASE_URL: the realtime WebSocket (`/v1/realtime…`) goes to one server as raw bytes
 * once the upgrade request is replayed to it, `/v1/audio/…` to another, everything else (chat
 * completions) to a third. HTTP is proxied with streaming in both directions, so a streamed answer
 * reaches the engine as the fake writes it. A bench tool, never a production path.
 */
import { createServer, request as httpRequest, Agent } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { connect } from 'node:net';

export interface ProviderRoutes {
  /** Base URLs (`http://host:port/v1`); only host and port are used. */
  readonly realtime: string;
  readonly audio: string;
  readonly other: string;
  /** PEM certificate and key: the engine reaches the router over TLS (`https://`, `wss://`). */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface ProviderRouter {
  /** `http://127.0.0.1:PORT/v1`. */
  readonly baseURL: string;
  close(): Promise<void>;
}

function hostPort(base: string): { host: string; port: number } {
  const u = new URL(base);
  return { host: u.hostname, port: Number(u.port) };
}

export async function startProviderRouter(routes: ProviderRoutes): Promise<ProviderRouter> {
  const realtime = hostPort(routes.realtime);
  const audio = hostPort(routes.audio);
  const other = hostPort(routes.other);
  const agent = new Agent({ keepAlive: true });
  const sockets = new Set<Socket>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const target = (req.url ?? '').startsWith('/v1/audio/') ? audio : other;
    const upstream = httpRequest(
      { ...target, agent, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    // The engine hung up early (an aborted stream): pass it on, as the provider would see it.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };
  const server = routes.tls === undefined ? createServer(handle) : createTlsServer(routes.tls, handle);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req, socket, head) => {
    if (!(req.url ?? '').startsWith('/v1/realtime')) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const upstream = connect(realtime.port, realtime.host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    const lines = [`${req.method ?? 'GET'} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
    upstream.on('error', () => socket.destroy());
    upstream.on('close', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    baseURL: `${routes.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}/v1`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
