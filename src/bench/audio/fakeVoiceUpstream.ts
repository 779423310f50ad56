/**
 * The upstream of the bare relay baseline: a fake speech-to-speech realtime socket in the shape of
 * OpenAI Realtime as Twilio's sample uses it. It takes `input_audio_buffer.append` events (base64
 * μ-law), runs a crude energy VAD on them, and when it has heard `minSpeechMs` of speech followed by
 * `silenceMsToStop` of silence it answers, after `replyDelayMs`, with `replyMs` of voice as
 * `response.output_audio.delta` events of 20 ms each, one every 20 ms (then `response.done`).
 *
 * The real API sends larger deltas faster than real time; 20 ms at real time makes the relay send
 * what the engine sends, one 160-byte frame per 20 ms, so the two arms' outbound work compares.
 * Every delta message is built once at start; one shared drift-free 20 ms timer paces all replies.
 * A bench fake, not a test double: it records nothing but counts.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { FRAME_MS, voiceFrames } from './syntheticVoice.ts';

export interface FakeVoiceUpstreamOptions {
  /** Silence after speech that ends an utterance, audio ms. Default 200. */
  readonly silenceMsToStop?: number;
  /** Speech needed before silence can end an utterance, audio ms. Default 100. */
  readonly minSpeechMs?: number;
  /** From the end of the utterance to the first delta (the model's latency). Default 300. */
  readonly replyDelayMs?: number;
  /** Audio per reply. Default 2000. */
  readonly replyMs?: number;
  /** PEM certificate and key: serve `wss://` instead of `ws://`. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface FakeVoiceUpstream {
  /** `ws://…/v1/realtime`. */
  readonly url: string;
  readonly connections: number;
  readonly appends: number;
  readonly replies: number;
  close(): Promise<void>;
}

/** Whether a μ-law byte is loud: exponent ≥ 3, about |sample| ≥ 1000 of 32767 (silence is 0xFF). */
function isLoud(byte: number): boolean {
  return ((~byte >> 4) & 0x07) >= 3;
}

const APPEND_PREFIX = '{"type":"input_audio_buffer.append"';
const AUDIO_KEY = '"audio":"';

/** The value of each base64 character (-1: not one). */
const BASE64 = new Int8Array(128).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries())
  BASE64[c.charCodeAt(0)] = i;

/**
 * Whether the μ-law audio, base64 in `s` from `start` to `end`, is loud: the first byte of every
 * 13th group of four characters (one sample in 39, about every 5 ms, so a voiced frame always has
 * loud ones), decoded in place.
 */
function sampleIsLoud(s: string, start: number, end: number): boolean {
  for (let i = start; i + 1 < end; i += 52) {
    const a = BASE64[s.charCodeAt(i) & 0x7f]!;
    const b = BASE64[s.charCodeAt(i + 1) & 0x7f]!;
    if (a >= 0 && b >= 0 && isLoud(((a << 2) | (b >> 4)) & 0xff)) return true;
  }
  return false;
}

interface Session {
  readonly ws: WebSocket;
  speechMs: number;
  silenceMs: number;
  /** The reply being sent: index of its next delta (-1 when none) and the 20 ms tick it is due at. */
  nextDelta: number;
  nextTick: number;
}

export async function startFakeVoiceUpstream(
  options: FakeVoiceUpstreamOptions = {},
): Promise<FakeVoiceUpstream> {
  const silenceMsToStop = options.silenceMsToStop ?? 200;
  const minSpeechMs = options.minSpeechMs ?? 100;
  const replyDelayMs = options.replyDelayMs ?? 300;
  const deltas = voiceFrames(options.replyMs ?? 2000, 7).map((audio, i) =>
    JSON.stringify({
      type: 'response.output_audio.delta',
      response_id: 'resp_bench',
      item_id: 'item_bench',
      output_index: 0,
      content_index: 0,
      delta: audio,
      event_id: `event_${i}`,
    }),
  );
  const done = JSON.stringify({ type: 'response.done', response: { id: 'resp_bench', status: 'completed' } });
  const replying = new Set<Session>();
  const sockets = new Set<Socket>();
  let connections = 0;
  let appends = 0;
  let replies = 0;

  const upgradeRequired = (_req: IncomingMessage, res: ServerResponse) => res.writeHead(426).end();
  const http =
    options.tls === undefined ? createServer(upgradeRequired) : createTlsServer(options.tls, upgradeRequired);
  http.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Text from the relay under test is trusted: no UTF-8 validation, which would only load the fake's CPU.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, skipUTF8Validation: true });
  http.on('upgrade', (req, socket, head) => {
    if (!(req.url ?? '').startsWith('/v1/realtime')) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, accept);
  });

  function accept(ws: WebSocket): void {
    connections += 1;
    const session: Session = { ws, speechMs: 0, silenceMs: 0, nextDelta: -1, nextTick: 0 };
    ws.send(JSON.stringify({ type: 'session.created', session: { id: `sess_${connections}` } }));
    ws.on('close', () => replying.delete(session));
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      const text = (data as Buffer).toString();
      // The relay's appends are the bulk of the traffic: read them without JSON.parse or a decode.
      let loud: boolean | null = null;
      let ms = 0;
      if (text.startsWith(APPEND_PREFIX)) {
        const start = text.indexOf(AUDIO_KEY);
        const end = start < 0 ? -1 : text.indexOf('"', start + AUDIO_KEY.length);
        if (end >= 0) {
          loud = sampleIsLoud(text, start + AUDIO_KEY.length, end);
          ms = ((end - start - AUDIO_KEY.length) * 3) / 4 / 8;
        }
      }
      if (loud === null) {
        let event: { type?: unknown; audio?: unknown };
        try {
          event = JSON.parse(text) as typeof event;
        } catch {
          return;
        }
        if (event.type !== 'input_audio_buffer.append' || typeof event.audio !== 'string') return;
        loud = sampleIsLoud(event.audio, 0, event.audio.length);
        ms = (event.audio.length * 3) / 4 / 8;
      }
      appends += 1;
      if (loud) {
        session.speechMs += ms;
        session.silenceMs = 0;
      } else if (session.speechMs > 0) {
        session.silenceMs += ms;
        if (session.speechMs >= minSpeechMs && session.silenceMs >= silenceMsToStop) {
          session.speechMs = 0;
          session.silenceMs = 0;
          setTimeout(() => {
            if (ws.readyState !== ws.OPEN) return;
            replies += 1;
            // From the next tick of the shared timer on, one delta per tick.
            session.nextDelta = 0;
            session.nextTick = Math.ceil((performance.now() - epochMs) / FRAME_MS);
            replying.add(session);
          }, replyDelayMs);
        }
      }
    });
  }

  /** Sends the session's deltas due by tick `tick` (a late tick catches up). */
  function pace(session: Session, tick: number): void {
    while (session.nextDelta >= 0 && session.nextTick <= tick) {
      const delta = deltas[session.nextDelta++];
      if (delta === undefined) {
        session.ws.send(done);
        session.nextDelta = -1;
        replying.delete(session);
        return;
      }
      session.ws.send(delta);
      session.nextTick += 1;
    }
  }

  // One timer for every reply, aimed at fixed 20 ms steps so its own lateness does not add up;
  // deltas are due by tick index, so a tick that fires a little early still sends its own.
  const epochMs = performance.now();
  let tick = 1;
  let timer: NodeJS.Timeout;
  const onTick = () => {
    for (const session of replying) pace(session, tick);
    tick += 1;
    timer = setTimeout(onTick, Math.max(0, epochMs + tick * FRAME_MS - performance.now()));
  };
  timer = setTimeout(onTick, FRAME_MS);

  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `${options.tls === undefined ? 'ws' : 'wss'}://127.0.0.1:${port}/v1/realtime`,
    get connections() {
      return connections;
    },
    get appends() {
      return appends;
    },
    get replies() {
      return replies;
    },
    close: async () => {
      clearTimeout(timer);
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      wss.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
