/**
 * The baseline the engine's Media Streams transport is measured against: the least a peer runs to
 * put a phone call on a realtime voice model, as Twilio's own Node sample does it. A node:http +
 * ws server that answers the voice webhook with `<Connect><Stream>` TwiML and, per call, parses
 * every inbound frame (JSON.parse), forwards each `media` payload to its own upstream WebSocket as
 * `input_audio_buffer.append`, and relays the upstream's `response.output_audio.delta` audio back
 * to the caller as `media` frames. Nothing else: no VAD, no marks, no state beyond the streamSid.
 * A bench baseline only, never a production path.
 */
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

export interface BareRelayOptions {
  /** The realtime upstream, e.g. `ws://127.0.0.1:PORT/v1/realtime`. */
  readonly upstreamUrl: string;
  readonly host?: string;
  /** Default 0 (a free port). */
  readonly port?: number;
}

export interface BareRelay {
  /** `http://host:port`; the webhook is `POST /twilio/voice`. */
  readonly url: string;
  /** Open caller streams. */
  readonly liveCalls: number;
  close(): Promise<void>;
}

const STREAM_PATH = '/media-stream';

type TwilioFrame = { event?: unknown; start?: { streamSid?: unknown }; media?: { payload?: unknown } };
type UpstreamEvent = { type?: unknown; delta?: unknown };

function handleCall(caller: WebSocket, upstreamUrl: string): void {
  let streamSid: string | null = null;
  const upstream = new WebSocket(upstreamUrl, {
    perMessageDeflate: false,
    headers: { authorization: 'Bearer bench' },
  });
  upstream.on('message', (data) => {
    let event: UpstreamEvent;
    try {
      event = JSON.parse((data as Buffer).toString()) as UpstreamEvent;
    } catch {
      return;
    }
    if (event.type === 'response.output_audio.delta' && typeof event.delta === 'string' && streamSid !== null)
      caller.send(JSON.stringify({ event: 'media', streamSid, media: { payload: event.delta } }));
  });
  upstream.on('error', () => caller.close(1011));
  upstream.on('close', () => caller.close(1000));
  caller.on('message', (data) => {
    let frame: TwilioFrame;
    try {
      frame = JSON.parse((data as Buffer).toString()) as TwilioFrame;
    } catch {
      return;
    }
    switch (frame.event) {
      case 'start':
        streamSid = typeof frame.start?.streamSid === 'string' ? frame.start.streamSid : null;
        return;
      case 'media':
        if (upstream.readyState === WebSocket.OPEN && typeof frame.media?.payload === 'string')
          upstream.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: frame.media.payload }));
        return;
      case 'stop':
        upstream.close();
        return;
    }
  });
  caller.on('error', () => undefined);
  caller.on('close', () => {
    if (upstream.readyState === WebSocket.CONNECTING) upstream.terminate();
    else upstream.close();
  });
}

export async function startBareRelay(options: BareRelayOptions): Promise<BareRelay> {
  const sockets = new Set<Socket>();
  const http = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/twilio/voice') {
      res.writeHead(404).end();
      return;
    }
    // The form is not needed; read it so the connection can be reused.
    req.resume();
    req.on('end', () => {
      const twiml =
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>' +
        `<Stream url="ws://${req.headers.host ?? '127.0.0.1'}${STREAM_PATH}"/>` +
        '</Connect></Response>';
      res.writeHead(200, { 'content-type': 'text/xml' }).end(twiml);
    });
  });
  http.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  http.on('upgrade', (req, socket, head) => {
    if (req.url !== STREAM_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => handleCall(ws, options.upstreamUrl));
  });
  await new Promise<void>((resolve) => http.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
  const address = http.address() as AddressInfo;
  return {
    url: `http://${address.address}:${address.port}`,
    get liveCalls() {
      return wss.clients.size;
    },
    close: async () => {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      wss.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
