/**
 * A fake OpenAI Realtime server for transcription sessions (the GA protocol subset Switchboard
 * uses), on a plain `ws` server. It accepts `session.update` and base64 μ-law appends, runs a crude
 * energy VAD over the audio it receives (or lets the test push events by hand), answers each
 * utterance with scripted delta and completed events, records every message, and can drop a
 * connection or refuse an upgrade to exercise reconnects.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { listenLocal } from './listen.ts';

/** What the fake answers for one utterance: its transcript, or a transcription failure. */
export type FakeUtteranceScript = string | { readonly fail: string };

export interface FakeRealtimeOptions {
  /** When set, upgrades without `Authorization: Bearer <apiKey>` get HTTP 401. */
  readonly apiKey?: string;
  /** Answer for utterances once the script queue is empty. Default 'hello there'. */
  readonly defaultTranscript?: string;
  /** Silence after speech that ends an utterance, in audio ms. Default 200. */
  readonly silenceMsToStop?: number;
  /** Pause between delta events (wall clock). Default 1. */
  readonly deltaIntervalMs?: number;
  /** `usage` in completed events. Default 'duration'. */
  readonly usage?: 'duration' | 'tokens';
  /** Run the energy VAD. Default true; false leaves speech events to `connection.send`. */
  readonly vad?: boolean;
  /** Port on 127.0.0.1. Default 0: one the system picks. */
  readonly port?: number;
  /** Told of every utterance the fake answers, and with what (`scripted`: from the queue). */
  readonly onAnswer?: (answer: FakeRealtimeAnswer) => void;
}

export interface FakeRealtimeAnswer {
  /** The connection's index. */
  readonly connection: number;
  readonly answer: FakeUtteranceScript;
  /** False when the script queue was empty and the default transcript answered. */
  readonly scripted: boolean;
}

export interface FakeRealtimeConnection {
  readonly index: number;
  /** Path and query of the upgrade request. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Every client event, parsed, in arrival order (appends included). */
  readonly messages: readonly Record<string, unknown>[];
  /** The base64 `audio` of each append, exactly as received. */
  readonly appends: readonly string[];
  /** Decoded μ-law bytes received so far (audio ms = bytes / 8). */
  readonly audioBytes: number;
  /** Set when the socket has closed: who closed it, and the close code. */
  readonly closed: { readonly by: 'client' | 'server'; readonly code: number } | null;
  /** Sends a raw server event. */
  send(event: Record<string, unknown>): void;
  /** Destroys the TCP socket without a close frame: a network drop. */
  drop(): void;
  /** Closes with a close frame from the server side. */
  closeFromServer(code?: number, reason?: string): void;
}

export interface FakeRealtimeServer {
  /** Pass as the adapter's `baseURL` (http; the adapter turns it into ws). */
  readonly baseURL: string;
  readonly connections: readonly FakeRealtimeConnection[];
  /** Queue answers for the next utterances (across connections); then the default is used. */
  script(...utterances: FakeUtteranceScript[]): void;
  /** The next `count` upgrade requests are refused with this HTTP status. */
  refuseUpgrades(status: number, count?: number): void;
  /** Upgrade requests seen, including refused ones. */
  readonly upgradeAttempts: number;
  /** Resolves with connection `index` once it exists. */
  connection(index: number): Promise<FakeRealtimeConnection>;
  close(): Promise<void>;
}

type MutableConnection = {
  -readonly [K in keyof FakeRealtimeConnection]: FakeRealtimeConnection[K];
} & { messages: Record<string, unknown>[]; appends: string[] };

let eventCounter = 0;
const eventId = () => `event_${++eventCounter}`;

/** Whether a μ-law byte is loud: exponent ≥ 3, about |sample| ≥ 1000 of 32767. Silence is 0xFF. */
function isLoud(byte: number): boolean {
  return ((~byte >> 4) & 0x07) >= 3;
}

/** Starts the fake on 127.0.0.1 (a random port unless `port` is given). */
export async function startFakeRealtimeServer(
  options: FakeRealtimeOptions = {},
): Promise<FakeRealtimeServer> {
  const silenceMsToStop = options.silenceMsToStop ?? 200;
  const deltaIntervalMs = options.deltaIntervalMs ?? 1;
  const defaultTranscript = options.defaultTranscript ?? 'hello there';
  const vadEnabled = options.vad ?? true;
  const queue: FakeUtteranceScript[] = [];
  const connections: MutableConnection[] = [];
  const waiters = new Map<number, ((c: FakeRealtimeConnection) => void)[]>();
  const sockets = new Set<Socket>();
  let refusals: { status: number; count: number } | null = null;
  let upgradeAttempts = 0;
  let itemCounter = 0;

  const http = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('Upgrade Required');
  });
  http.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

  http.on('upgrade', (req, socket, head) => {
    upgradeAttempts += 1;
    const refuse = (status: number) => {
      socket.end(
        `HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}`,
      );
    };
    if (refusals !== null && refusals.count > 0) {
      refusals.count -= 1;
      refuse(refusals.status);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname !== '/v1/realtime') {
      refuse(404);
      return;
    }
    if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      refuse(401);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req.url ?? '/', req.headers));
  });

  function accept(ws: WebSocket, url: string, headers: IncomingHttpHeaders): void {
    let serverClosing = false;
    const send = (event: Record<string, unknown>) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ event_id: eventId(), ...event }));
    };
    const connection: MutableConnection = {
      index: connections.length,
      url,
      headers,
      messages: [],
      appends: [],
      audioBytes: 0,
      closed: null,
      send,
      drop: () => {
        serverClosing = true;
        ws.terminate();
      },
      closeFromServer: (code = 1011, reason = 'server closing') => {
        serverClosing = true;
        ws.close(code, reason);
      },
    };
    connections.push(connection);
    for (const resolve of waiters.get(connection.index) ?? []) resolve(connection);
    waiters.delete(connection.index);
    ws.on('close', (code) => {
      connection.closed = { by: serverClosing ? 'server' : 'client', code };
    });

    // The real API refuses the retired beta handshake this way since 2026 (reported, not documented).
    if (headers['openai-beta'] !== undefined) {
      send({
        type: 'error',
        error: {
          type: 'invalid_request_error',
          code: 'beta_api_shape_disabled',
          message: 'Beta API shape disabled',
        },
      });
      connection.closeFromServer(4000, 'beta_api_shape_disabled');
      return;
    }

    send({ type: 'session.created', session: { type: 'transcription', id: `sess_${connection.index}` } });

    // Energy VAD state, in audio milliseconds.
    let speaking = false;
    let itemId = '';
    let lastLoudMs = 0;
    let previousItem: string | null = null;

    const answer = async (id: string, audioMs: number) => {
      const next = queue.shift();
      const scripted = next ?? defaultTranscript;
      options.onAnswer?.({ connection: connection.index, answer: scripted, scripted: next !== undefined });
      if (typeof scripted !== 'string') {
        send({
          type: 'conversation.item.input_audio_transcription.failed',
          item_id: id,
          content_index: 0,
          error: { type: 'transcription_error', code: 'audio_unintelligible', message: scripted.fail },
        });
        return;
      }
      for (const word of scripted.match(/\s*\S+/g) ?? []) {
        await new Promise((r) => setTimeout(r, deltaIntervalMs));
        send({
          type: 'conversation.item.input_audio_transcription.delta',
          item_id: id,
          content_index: 0,
          delta: word,
        });
      }
      send({
        type: 'conversation.item.input_audio_transcription.completed',
        item_id: id,
        content_index: 0,
        transcript: scripted,
        usage:
          options.usage === 'tokens'
            ? { type: 'tokens', input_tokens: Math.ceil(audioMs / 100), output_tokens: 5, total_tokens: 0 }
            : { type: 'duration', seconds: audioMs / 1000 },
      });
    };

    const hear = (audio: Buffer) => {
      for (const byte of audio) {
        connection.audioBytes += 1;
        const nowMs = connection.audioBytes / 8;
        if (isLoud(byte)) {
          lastLoudMs = nowMs;
          if (!speaking) {
            speaking = true;
            itemId = `item_${++itemCounter}`;
            send({
              type: 'input_audio_buffer.speech_started',
              audio_start_ms: Math.max(0, Math.floor(nowMs) - 300),
              item_id: itemId,
            });
          }
        } else if (speaking && nowMs - lastLoudMs >= silenceMsToStop) {
          speaking = false;
          const id = itemId;
          send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: Math.floor(nowMs), item_id: id });
          send({ type: 'input_audio_buffer.committed', item_id: id, previous_item_id: previousItem });
          previousItem = id;
          void answer(id, nowMs);
        }
      }
    };

    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        send({
          type: 'error',
          error: {
            type: 'invalid_request_error',
            code: 'binary_frame',
            message: 'Binary frames are not supported',
          },
        });
        return;
      }
      let event: Record<string, unknown>;
      try {
        const text = Array.isArray(data)
          ? Buffer.concat(data)
          : data instanceof ArrayBuffer
            ? Buffer.from(data)
            : data;
        event = JSON.parse(text.toString('utf8')) as Record<string, unknown>;
      } catch {
        send({
          type: 'error',
          error: { type: 'invalid_request_error', code: 'invalid_json', message: 'Invalid JSON' },
        });
        return;
      }
      connection.messages.push(event);
      switch (event.type) {
        case 'session.update': {
          const session = event.session as Record<string, unknown> | undefined;
          if (session?.type !== 'transcription') {
            send({
              type: 'error',
              error: { type: 'invalid_request_error', code: 'invalid_value', message: 'session.type' },
            });
            return;
          }
          send({ type: 'session.updated', session });
          return;
        }
        case 'input_audio_buffer.append': {
          const audio = event.audio;
          if (typeof audio !== 'string') {
            send({
              type: 'error',
              error: { type: 'invalid_request_error', code: 'missing_audio', message: 'audio' },
            });
            return;
          }
          connection.appends.push(audio);
          const bytes = Buffer.from(audio, 'base64');
          if (vadEnabled) hear(bytes);
          else connection.audioBytes += bytes.length;
          return;
        }
        case 'input_audio_buffer.commit':
        case 'input_audio_buffer.clear':
          return;
        default:
          send({
            type: 'error',
            error: {
              type: 'invalid_request_error',
              code: 'unknown_event',
              message: `Unknown event ${String(event.type)}`,
            },
          });
      }
    });
  }

  const port = await listenLocal(http, options.port);

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    connections,
    get upgradeAttempts() {
      return upgradeAttempts;
    },
    script: (...utterances) => {
      queue.push(...utterances);
    },
    refuseUpgrades: (status, count = 1) => {
      refusals = { status, count };
    },
    connection: (index) => {
      const existing = connections[index];
      if (existing !== undefined) return Promise.resolve(existing);
      return new Promise((resolve) => {
        const list = waiters.get(index) ?? [];
        list.push(resolve);
        waiters.set(index, list);
      });
    },
    close: async () => {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      wss.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
