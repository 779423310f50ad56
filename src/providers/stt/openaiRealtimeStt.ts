/**
 * SttProvider over OpenAI Realtime in a transcription-only session (GA protocol), on a plain `ws`
 * socket. Twilio's μ-law bytes are forwarded untouched (`audio/pcmu`), two 20 ms frames per append
 * (FrameBatcher; 25 while the transport says no utterance can be ending), the server's VAD finds the
 * utterances, and a dropped socket is reopened with backoff while the call goes on.
 *
 * Why not the SDK's `OpenAIRealtimeWS` (openai/realtime/ws): it always forces a `wss:` URL (a plain
 * `ws://` fake or LAN server cannot be reached), and its own reconnect is refused for transcription
 * sessions ("requires a model session"), so it would add nothing but a second event emitter. The SDK
 * supplies the protocol's types only: type imports, erased at run time, so the engine never loads it.
 */
import type {
  RealtimeServerEvent,
  RealtimeTranscriptionSessionCreateRequest,
  SessionUpdateEvent,
} from 'openai/resources/realtime/realtime';
import WebSocket, { type RawData } from 'ws';
import { base64ByteLength } from '../../base64.ts';
import { OPENAI_API_BASE_URL } from '../http/httpClient.ts';
import {
  SttError,
  callSafely,
  type SttCallbacks,
  type SttProvider,
  type SttSession,
  type SttStats,
  type SttUsage,
} from './sttSession.ts';
import { FrameBatcher } from './frameBatcher.ts';
import { sttCostUsd } from './sttPrices.ts';

export interface OpenAiRealtimeSttOptions {
  readonly apiKey: string;
  /**
   * Must include `/v1`; http(s) becomes ws(s). Default https://api.openai.com/v1 (the app passes
   * STT_BASE_URL or OPENAI_BASE_URL).
   */
  readonly baseURL?: string;
  /** Transcription model. Default gpt-4o-transcribe. */
  readonly model?: string;
  /** ISO-639-1, e.g. 'en'. Improves accuracy and latency when known. */
  readonly language?: string;
  /** Vocabulary hint (company name, street names). */
  readonly prompt?: string;
  /** Default 'near_field' (a handset held to the mouth); 'off' sends none. */
  readonly noiseReduction?: 'near_field' | 'far_field' | 'off';
  /** Server VAD tuning; the API defaults are 0.5 / 300 / 500. */
  readonly vad?: {
    readonly threshold?: number;
    readonly prefixPaddingMs?: number;
    readonly silenceDurationMs?: number;
  };
  /** WebSocket opening handshake. Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Consecutive failed attempts before the session fails for good (default 5), and the backoff (default 250 ms doubling to 4000 ms, ±20 % jitter). */
  readonly reconnect?: {
    readonly maxAttempts?: number;
    readonly initialDelayMs?: number;
    readonly maxDelayMs?: number;
  };
  /** Frames kept while (re)connecting, oldest dropped first. Default 50 (1 s of 20 ms frames). */
  readonly maxBufferedFrames?: number;
  /** Liveness ping; a socket that misses one pong is dropped and reopened. Default 10 000; 0 disables. */
  readonly pingIntervalMs?: number;
  /**
   * Inbound frames per `input_audio_buffer.append` (FrameBatcher): 2 halves the messages and system
   * calls of the inbound path for at most 20 ms of added delay on every other frame; 1 sends each
   * frame as it comes (a base64 string frame then goes out exactly as given). Default 2.
   */
  readonly framesPerAppend?: number;
  /**
   * Frames per append while the transport says no utterance can be ending (`setRelaxed(true)`):
   * nobody waits on that audio, so 25 (500 ms, each batch handed on within RELAXED_MAX_HOLD_MS)
   * cuts those messages to a twenty-fifth. The server's VAD times speech by the audio, not by its
   * arrival, so transcripts are the same; only its speech start may come up to 500 ms later, and
   * barge-in does not wait for it (the local VAD). `setRelaxed(false)` puts the adapter back on
   * `framesPerAppend` and sends what is held at once. Default 25; at most `framesPerAppend` makes
   * the hint do nothing.
   */
  readonly relaxedFramesPerAppend?: number;
  /** Audio sent, reported at each final transcript and at close. */
  readonly onUsage?: (usage: SttUsage) => void;
}

const DEFAULT_MODEL = 'gpt-4o-transcribe';
/** The longest a relaxed frame waits for the rest of its batch (a full one takes 500 ms of audio). */
const RELAXED_MAX_HOLD_MS = 600;
const MULAW_BYTES_PER_SECOND = 8000;
// A stalled socket (no pong yet) must not grow without bound: ~45 s of appends.
const MAX_SOCKET_BUFFERED_BYTES = 512 * 1024;
// Statuses on the upgrade that another attempt cannot fix.
const FATAL_UPGRADE_STATUSES = new Set([400, 401, 403, 404]);
/**
 * The masking key of every frame this client sends: zero, which `ws` recognises and then neither
 * copies a text message into a buffer nor XORs it byte by byte (a frame per 40–100 ms of each
 * call's audio). RFC 6455 asks browsers for unpredictable keys so that script on a page cannot
 * shape the bytes a proxy sees into something it would cache; here the sender is the server, the
 * connection to OpenAI is TLS (a plain `ws:` URL is a server of the operator's own), and the only
 * caller-influenced bytes are base64 audio inside our own JSON, which cannot spell a request line.
 * The frames still carry the mask bit the protocol requires of a client.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

// base64 has no characters JSON must escape, so the per-frame message is built by concatenation.
const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';
const APPEND_SUFFIX = '"}';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The GA transcription URL for an OpenAI-style base URL: `<base>/realtime?intent=transcription`. */
export function realtimeTranscriptionUrl(baseURL: string): URL {
  const url = new URL(baseURL);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/realtime`;
  url.search = '';
  url.hash = '';
  url.searchParams.set('intent', 'transcription');
  return url;
}

/** The `session.update` this adapter sends on every (re)connection. */
export function transcriptionSessionUpdate(options: OpenAiRealtimeSttOptions): SessionUpdateEvent {
  const noiseReduction = options.noiseReduction ?? 'near_field';
  const session: RealtimeTranscriptionSessionCreateRequest = {
    type: 'transcription',
    audio: {
      input: {
        format: { type: 'audio/pcmu' },
        ...(noiseReduction === 'off' ? {} : { noise_reduction: { type: noiseReduction } }),
        transcription: {
          model: options.model ?? DEFAULT_MODEL,
          ...(options.language === undefined ? {} : { language: options.language }),
          ...(options.prompt === undefined ? {} : { prompt: options.prompt }),
        },
        turn_detection: {
          type: 'server_vad',
          threshold: options.vad?.threshold ?? 0.5,
          prefix_padding_ms: options.vad?.prefixPaddingMs ?? 300,
          silence_duration_ms: options.vad?.silenceDurationMs ?? 500,
        },
      },
    },
  };
  return { type: 'session.update', session };
}

/** Creates the realtime STT provider; each call opens its own socket. */
export function createOpenAiRealtimeStt(options: OpenAiRealtimeSttOptions): SttProvider {
  const model = options.model ?? DEFAULT_MODEL;
  const url = realtimeTranscriptionUrl(options.baseURL ?? OPENAI_API_BASE_URL);
  const sessionUpdate = JSON.stringify(transcriptionSessionUpdate(options));

  return {
    provider: 'openai',
    model,
    openSttSession: (callbacks) => openSession({ options, model, url, sessionUpdate, callbacks }),
  };
}

type State = SttStats['state'];

function openSession(setup: {
  options: OpenAiRealtimeSttOptions;
  model: string;
  url: URL;
  sessionUpdate: string;
  callbacks: SttCallbacks;
}): SttSession {
  const { options, model, url, sessionUpdate, callbacks } = setup;
  const maxAttempts = options.reconnect?.maxAttempts ?? 5;
  const initialDelayMs = options.reconnect?.initialDelayMs ?? 250;
  const maxDelayMs = options.reconnect?.maxDelayMs ?? 4000;
  const maxBufferedFrames = options.maxBufferedFrames ?? 50;
  const pingIntervalMs = options.pingIntervalMs ?? 10_000;

  let state: State = 'connecting';
  let socket: WebSocket | null = null;
  let failedAttempts = 0;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let pingTimer: NodeJS.Timeout | null = null;
  const framesPerAppend = Math.max(1, Math.floor(options.framesPerAppend ?? 2));
  const relaxedFramesPerAppend = Math.max(framesPerAppend, Math.floor(options.relaxedFramesPerAppend ?? 25));
  // Appends waiting for a socket, oldest first, with the frames each holds (at most
  // maxBufferedFrames in all; a plain array is fine at this bound).
  let pending: { b64: string; frames: number }[] = [];
  let pendingFrames = 0;
  let inSpeech = false;
  const partials = new Map<string, string>();
  const stoppedAt = new Map<string, number>();
  let closing: Promise<void> | null = null;

  let framesSent = 0;
  let framesDropped = 0;
  let bytesSent = 0;
  let unreportedBytes = 0;
  let reconnects = 0;
  let finals = 0;

  const report = (reported: SttUsage['reported']) => {
    const audioSeconds = unreportedBytes / MULAW_BYTES_PER_SECOND;
    unreportedBytes = 0;
    if (options.onUsage === undefined && callbacks.onUsage === undefined) return;
    if (audioSeconds === 0 && reported === null) return;
    const usage: SttUsage = {
      provider: 'openai',
      model,
      audioSeconds,
      costUsd: sttCostUsd(model, audioSeconds),
      reported,
    };
    for (const sink of [options.onUsage, callbacks.onUsage]) {
      try {
        sink?.(usage);
      } catch {
        // A failing cost sink must not take the call's audio down with it.
      }
    }
  };

  const transmit = (ws: WebSocket, b64: string, frames: number, bytes: number) => {
    ws.send(APPEND_PREFIX + b64 + APPEND_SUFFIX);
    framesSent += frames;
    bytesSent += bytes;
    unreportedBytes += bytes;
  };

  const hold = (b64: string, frames: number) => {
    pending.push({ b64, frames });
    pendingFrames += frames;
    while (pendingFrames > maxBufferedFrames) {
      const oldest = pending.shift()!;
      pendingFrames -= oldest.frames;
      framesDropped += oldest.frames;
    }
  };

  const dropPending = () => {
    framesDropped += pendingFrames + batcher.discard();
    pending = [];
    pendingFrames = 0;
  };

  /** Where appends go: the open socket, the reconnect buffer, or nowhere once the session ended. */
  const route = (b64: string, frames: number, bytes: number) => {
    if (state === 'open' && socket !== null && socket.readyState === WebSocket.OPEN) {
      if (socket.bufferedAmount > MAX_SOCKET_BUFFERED_BYTES) framesDropped += frames;
      else transmit(socket, b64, frames, bytes);
    } else if (state === 'connecting' || state === 'reconnecting' || state === 'open') {
      // 'open' with a socket that is not OPEN: it is closing, and its close handler reconnects.
      hold(b64, frames);
    } else {
      framesDropped += frames;
    }
  };
  const batcher = new FrameBatcher(framesPerAppend, route);
  // Scratch for base64 string frames that are batched (decoded, then re-encoded with their partner).
  let scratch = Buffer.allocUnsafe(160);

  const stopTimers = () => {
    if (reconnectTimer !== null) clearTimeout(reconnectTimer);
    if (pingTimer !== null) clearInterval(pingTimer);
    reconnectTimer = null;
    pingTimer = null;
  };

  const fail = (err: SttError) => {
    if (state === 'closed' || state === 'failed') return;
    state = 'failed';
    stopTimers();
    dropPending();
    batcher.close();
    socket?.terminate();
    socket = null;
    report(null);
    callSafely(callbacks, () => callbacks.onError(err));
  };

  const handleEvent = (event: RealtimeServerEvent) => {
    switch (event.type) {
      case 'session.updated':
        // Our configuration was accepted: only now does the connection count as healthy.
        failedAttempts = 0;
        break;
      case 'input_audio_buffer.speech_started':
        // Never two starts without a stop, whatever the server sends.
        if (!inSpeech) {
          inSpeech = true;
          callSafely(callbacks, () => callbacks.onSpeechStarted());
        }
        break;
      case 'input_audio_buffer.speech_stopped':
        stoppedAt.set(event.item_id, performance.now());
        if (inSpeech) {
          inSpeech = false;
          callSafely(callbacks, () => callbacks.onSpeechStopped('vad'));
        }
        break;
      case 'conversation.item.input_audio_transcription.delta': {
        const text = (partials.get(event.item_id) ?? '') + (event.delta ?? '');
        partials.set(event.item_id, text);
        callSafely(callbacks, () => callbacks.onPartial(text));
        break;
      }
      case 'conversation.item.input_audio_transcription.completed': {
        partials.delete(event.item_id);
        const stopped = stoppedAt.get(event.item_id);
        stoppedAt.delete(event.item_id);
        finals += 1;
        const info = {
          utteranceId: event.item_id,
          latencyMs: stopped === undefined ? null : performance.now() - stopped,
        };
        const text = typeof event.transcript === 'string' ? event.transcript : '';
        callSafely(callbacks, () => callbacks.onFinal(text, info));
        const usage = event.usage as (typeof event)['usage'] | undefined;
        report(
          usage?.type === 'tokens'
            ? { type: 'tokens', inputTokens: usage.input_tokens, outputTokens: usage.output_tokens }
            : usage?.type === 'duration'
              ? { type: 'duration', seconds: usage.seconds }
              : null,
        );
        break;
      }
      case 'conversation.item.input_audio_transcription.failed':
        partials.delete(event.item_id);
        stoppedAt.delete(event.item_id);
        callSafely(callbacks, () =>
          callbacks.onError(
            new SttError(
              'ERR_STT_TRANSCRIPTION_FAILED',
              `openai could not transcribe an utterance: ${event.error.code ?? ''} ${event.error.message ?? ''}`.trim(),
              { fatal: false, retryable: false },
            ),
          ),
        );
        break;
      case 'error':
        callSafely(callbacks, () =>
          callbacks.onError(
            new SttError(
              'ERR_STT_PROVIDER',
              `openai realtime error: ${event.error.code ?? event.error.type}: ${event.error.message}`,
              { fatal: false },
            ),
          ),
        );
        break;
      default:
        break;
    }
  };

  const scheduleReconnect = (why: string, upgradeStatus: number | null) => {
    if (upgradeStatus !== null && FATAL_UPGRADE_STATUSES.has(upgradeStatus)) {
      fail(
        new SttError('ERR_STT_HTTP', `openai realtime refused the connection: HTTP ${upgradeStatus}`, {
          fatal: true,
          status: upgradeStatus,
        }),
      );
      return;
    }
    failedAttempts += 1;
    if (failedAttempts > maxAttempts) {
      fail(
        new SttError(
          'ERR_STT_CONNECTION',
          `openai realtime unreachable after ${maxAttempts} attempts: ${why}`,
          {
            fatal: true,
            retryable: true,
          },
        ),
      );
      return;
    }
    state = 'reconnecting';
    const delay =
      Math.min(maxDelayMs, initialDelayMs * 2 ** (failedAttempts - 1)) * (0.8 + 0.4 * Math.random());
    callSafely(callbacks, () =>
      callbacks.onError(
        new SttError('ERR_STT_CONNECTION', `openai realtime connection lost (${why}); reconnecting`, {
          fatal: false,
          retryable: true,
          ...(upgradeStatus === null ? {} : { status: upgradeStatus }),
        }),
      ),
    );
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, delay);
  };

  const connect = () => {
    const ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${options.apiKey}` },
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? 5000,
      generateMask: zeroMask,
    });
    socket = ws;
    let upgradeStatus: number | null = null;
    let lastError: string | null = null;
    let wasOpen = false;
    let alive = true;

    ws.on('unexpected-response', (_request, response) => {
      upgradeStatus = response.statusCode ?? null;
      response.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      lastError = err.message;
    });
    ws.on('open', () => {
      if (socket !== ws || state === 'closed' || state === 'failed') return;
      wasOpen = true;
      if (state === 'reconnecting') reconnects += 1;
      state = 'open';
      // Configure first: the server reads the appends that follow with this format.
      ws.send(sessionUpdate);
      const held = pending;
      pending = [];
      pendingFrames = 0;
      for (const p of held) transmit(ws, p.b64, p.frames, base64ByteLength(p.b64));
      if (pingIntervalMs > 0) {
        pingTimer = setInterval(() => {
          if (!alive) {
            lastError = 'no pong';
            ws.terminate();
            return;
          }
          alive = false;
          ws.ping();
        }, pingIntervalMs);
        pingTimer.unref();
      }
    });
    ws.on('pong', () => {
      alive = true;
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (socket !== ws || state !== 'open') return;
      alive = true;
      if (isBinary) return;
      let event: RealtimeServerEvent;
      try {
        event = JSON.parse(rawText(data)) as RealtimeServerEvent;
      } catch (err) {
        callSafely(callbacks, () =>
          callbacks.onError(
            new SttError('ERR_STT_BAD_RESPONSE', 'openai realtime sent a frame that is not JSON', {
              fatal: false,
              cause: err,
            }),
          ),
        );
        return;
      }
      if (typeof event !== 'object' || event === null || typeof event.type !== 'string') return;
      handleEvent(event);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (socket !== ws) return;
      socket = null;
      if (pingTimer !== null) clearInterval(pingTimer);
      pingTimer = null;
      if (state === 'closed' || state === 'failed') return;
      // The utterance in flight is lost with the server's buffer: close it for the transport.
      partials.clear();
      stoppedAt.clear();
      if (inSpeech) {
        inSpeech = false;
        callSafely(callbacks, () => callbacks.onSpeechStopped('disconnected'));
      }
      const why = wasOpen
        ? `closed ${code}${reason.length > 0 ? ` ${reason.toString('utf8')}` : ''}`
        : upgradeStatus !== null
          ? `HTTP ${upgradeStatus}`
          : (lastError ?? `closed ${code}`);
      scheduleReconnect(why, upgradeStatus);
    });
  };

  connect();

  return {
    // Once the session has ended, its batcher hands each frame on alone and `route` drops it.
    sendMulaw(frame) {
      if (typeof frame !== 'string') {
        batcher.push(frame);
        return;
      }
      // A payload with a quote would break the JSON we concatenate; Twilio's never has one.
      if (!BASE64.test(frame)) {
        framesDropped += 1;
        return;
      }
      if (framesPerAppend === 1) {
        route(frame, 1, base64ByteLength(frame));
        return;
      }
      const bytes = base64ByteLength(frame);
      if (bytes > scratch.length) scratch = Buffer.allocUnsafe(bytes);
      const written = scratch.write(frame, 'base64');
      batcher.push(scratch.subarray(0, written));
    },

    setRelaxed(relaxed) {
      if (relaxed) batcher.setEvery(relaxedFramesPerAppend, RELAXED_MAX_HOLD_MS);
      else batcher.setEvery(framesPerAppend);
    },

    close() {
      if (closing !== null) return closing;
      const wasFailed = state === 'failed';
      // What the batcher holds goes out (or into the reconnect buffer) before the close frame.
      batcher.close();
      state = 'closed';
      stopTimers();
      dropPending();
      if (!wasFailed) report(null);
      const ws = socket;
      socket = null;
      if (ws === null) {
        closing = Promise.resolve();
        return closing;
      }
      closing = new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) {
          resolve();
          return;
        }
        ws.once('close', () => resolve());
        if (ws.readyState === WebSocket.OPEN) {
          ws.close(1000, 'OK');
          // A peer that never answers the close frame is cut off.
          setTimeout(() => ws.terminate(), 1000).unref();
        } else {
          ws.terminate();
        }
      });
      return closing;
    },

    stats() {
      return {
        state,
        framesSent,
        framesDropped,
        bytesSent,
        audioSecondsSent: bytesSent / MULAW_BYTES_PER_SECOND,
        reconnects,
        finals,
      };
    },
  };
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}
