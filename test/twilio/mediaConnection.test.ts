import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { CallEvent } from '../../machines/callMachine.ts';
import type { CallSession } from '../../src/calls/callSession.ts';
import type { CallTransport, HeardReport } from '../../src/calls/callTransport.ts';
import type { CostEvent } from '../../src/cost/costEvent.ts';
import {
  createHttpTranscriptionStt,
  localSegmentingVad,
} from '../../src/providers/stt/httpTranscriptionStt.ts';
import { createOpenAiRealtimeStt } from '../../src/providers/stt/openaiRealtimeStt.ts';
import {
  SttError,
  type SttCallbacks,
  type SttProvider,
  type SttSession,
  type SttUsage,
} from '../../src/providers/stt/sttSession.ts';
import type { ReplyStats } from '../../src/speech/playout.ts';
import type { CallControl, Handoff, HandoffStore } from '../../src/twilio/callControl.ts';
import {
  handleMediaSocket,
  type MediaAudioTiming,
  type MediaCallSession,
  type MediaDeps,
  type MediaSocketOptions,
} from '../../src/twilio/mediaConnection.ts';
import { MAX_MEDIA_FRAME_BYTES, parseMediaFrame } from '../../src/twilio/mediaProtocol.ts';
import type { StreamGrant } from '../../src/twilio/streamTokens.ts';
import { startFakeAudioServer, type FakeAudioServer } from '../fakes/fakeAudioServer.ts';
import { startFakeRealtimeServer, type FakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';
import { waitFor } from '../support/waitFor.ts';
import { captureLogger, fakeSpeech, type FakeSpeech, type FakeSpeechOptions } from './mediaDoubles.ts';

// The engine's CallSession must fit what the connection asks of a session.
const _sessionFits = (s: CallSession): MediaCallSession => s;

const S1 = 'Thanks for calling Riverside Plumbing.';
const S2 = 'We can send someone out this afternoon.';
const S3 = 'Would two o clock work for you today?';
const THREE = `${S1} ${S2} ${S3}`;
const CALL_SID = 'CA0123456789abcdef0123456789abcdef';
const STREAM_SID = 'MZ0123456789abcdef0123456789abcdef';
const SILENCE = new Uint8Array(160).fill(0xff);
/** Decodes to about −5000 of 32767: loud speech to the local VAD and to the fake STT server. */
const LOUD = new Uint8Array(160).fill(0x10);

// ---------------------------------------------------------------------------------------------
// Doubles: the call session, STT, call control and handoff notes.

type Script = {
  /** Runs when the session gets twilio.start (the machine greets here). */
  onStart?: (s: FakeSession) => void;
  onEvent?: (s: FakeSession, event: CallEvent) => void;
};

class FakeSession implements MediaCallSession {
  readonly id = randomUUID();
  readonly company = { voice: { ttsVoice: 'verse' } };
  callSid: string | null = null;
  ended = false;
  stopReason: string | null = null;
  readonly events: CallEvent[] = [];
  readonly heard: HeardReport[] = [];
  readonly done: number[] = [];
  /** performance.now() and the STT frame count when each event arrived. */
  readonly arrivals: { type: string; at: number; sttFrames: number }[] = [];
  /** Stop function of the reply being spoken, like the machine's speaker actor. */
  speaking: (() => void) | null = null;
  readonly transport: CallTransport;
  readonly #script: Script;
  readonly #stt: FakeStt | null;

  constructor(transport: CallTransport, script: Script, stt: FakeStt | null) {
    this.transport = transport;
    this.#script = script;
    this.#stt = stt;
  }

  send(event: CallEvent): void {
    if (this.ended) return;
    this.events.push(event);
    this.arrivals.push({
      type: event.type,
      at: performance.now(),
      sttFrames: this.#stt?.sessions.at(-1)?.frames ?? 0,
    });
    if (event.type === 'twilio.start') {
      this.callSid = event.callSid;
      this.#script.onStart?.(this);
    }
    // Barge-in, as the machine does it: leaving `speaking` calls the speaker's stop function.
    if (event.type === 'caller.speechStarted' && this.speaking !== null) {
      this.speaking();
      this.speaking = null;
    }
    this.#script.onEvent?.(this, event);
  }

  say(text: string, turn: number, cacheable = false): void {
    const stop = this.transport.speak(text, {
      turn,
      interruptible: true,
      cacheable,
      onDone: () => {
        this.done.push(turn);
        if (this.speaking === stop) this.speaking = null;
      },
    });
    this.speaking = stop;
  }

  stop(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.stopReason = reason;
    // As CallSession does: ending the call closes its transport.
    this.transport.close(reason);
  }

  noteHeard(report: HeardReport): void {
    this.heard.push(report);
  }
}

interface FakeSttSession {
  readonly callbacks: SttCallbacks;
  frames: number;
  closed: boolean;
  /** Each `setRelaxed` hint, with the frames sent before it. */
  readonly relaxed: { afterFrames: number; relaxed: boolean }[];
}

interface FakeStt extends SttProvider {
  readonly sessions: FakeSttSession[];
}

function fakeStt(): FakeStt {
  const sessions: FakeSttSession[] = [];
  return {
    provider: 'openai',
    model: 'fake-transcribe',
    sessions,
    openSttSession(callbacks): SttSession {
      const record: FakeSttSession = { callbacks, frames: 0, closed: false, relaxed: [] };
      sessions.push(record);
      return {
        sendMulaw: () => {
          record.frames += 1;
        },
        setRelaxed: (relaxed) => {
          record.relaxed.push({ afterFrames: record.frames, relaxed });
        },
        close: () => {
          record.closed = true;
          return Promise.resolve();
        },
        stats: () => ({
          state: record.closed ? 'closed' : 'open',
          framesSent: record.frames,
          framesDropped: 0,
          bytesSent: record.frames * 160,
          audioSecondsSent: (record.frames * 160) / 8000,
          reconnects: 0,
          finals: 0,
        }),
      };
    },
  };
}

function fakeCallControl(options: { fail?: boolean; delayMs?: number } = {}) {
  const calls: { action: string; callSid: string; number?: string; settledAt?: number }[] = [];
  const run = async (entry: (typeof calls)[number]) => {
    calls.push(entry);
    await new Promise((r) => setTimeout(r, options.delayMs ?? 10));
    entry.settledAt = performance.now();
    if (options.fail) throw Object.assign(new Error('twilio answered 500'), { code: 'ERR_TWILIO_API' });
  };
  const control: CallControl = {
    transfer: (callSid, number) => run({ action: 'transfer', callSid, number }),
    hangup: (callSid) => run({ action: 'hangup', callSid }),
  };
  return { control, calls };
}

function fakeHandoffs(delayMs = 20) {
  const puts: { callSid: string; handoff: Handoff; storedAt?: number }[] = [];
  const store: HandoffStore = {
    put: async (callSid, handoff) => {
      const entry: (typeof puts)[number] = { callSid, handoff };
      puts.push(entry);
      await new Promise((r) => setTimeout(r, delayMs));
      entry.storedAt = performance.now();
    },
    take: () => Promise.resolve(null),
  };
  return { store, puts };
}

// ---------------------------------------------------------------------------------------------
// A WebSocket server running handleMediaSocket, and a fake Twilio on the other end.

interface Server {
  readonly url: string;
  readonly wss: WebSocketServer;
  readonly sessions: FakeSession[];
  readonly stt: FakeStt;
  readonly speech: FakeSpeech;
  readonly costs: CostEvent[];
  readonly lines: string[];
  readonly observed: {
    invalid: string[];
    bargeIns: { turn: number; reactionMs: number | null }[];
    audio: MediaAudioTiming[];
    replies: ReplyStats[];
    sttErrors: string[];
  };
  /** Grant a token will get (default: company acme, CALL_SID). */
  grant(token: string, grant: Partial<StreamGrant>): void;
  close(): Promise<void>;
}

interface ServerSetup {
  readonly script?: Script;
  readonly speech?: FakeSpeechOptions;
  readonly options?: MediaSocketOptions;
  readonly deps?: Partial<MediaDeps>;
  /** Use this STT provider instead of the double. */
  readonly stt?: SttProvider;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function startServer(setup: ServerSetup = {}): Promise<Server> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: MAX_MEDIA_FRAME_BYTES,
  });
  await once(wss, 'listening');
  const sessions: FakeSession[] = [];
  const stt = fakeStt();
  const speech = fakeSpeech(setup.speech);
  const costs: CostEvent[] = [];
  const { log, lines } = captureLogger();
  const grants = new Map<string, Partial<StreamGrant>>();
  const observed: Server['observed'] = { invalid: [], bargeIns: [], audio: [], replies: [], sttErrors: [] };
  const { store } = fakeHandoffs();
  const deps: MediaDeps = {
    openCall: (_companyId, transport) => {
      const session = new FakeSession(transport, setup.script ?? {}, setup.stt === undefined ? stt : null);
      sessions.push(session);
      return session;
    },
    stt: setup.stt ?? stt,
    speech,
    callControl: null,
    handoffs: store,
    ledger: { record: (e) => costs.push(e) },
    log,
    observe: {
      invalidFrame: (reason) => observed.invalid.push(reason),
      bargeIn: (info) => observed.bargeIns.push(info),
      firstAudio: (t) => observed.audio.push(t),
      replyEnded: (s) => observed.replies.push(s),
      sttError: (code, fatal) => observed.sttErrors.push(`${code}${fatal ? ':fatal' : ''}`),
      sttReconnect: () => observed.sttErrors.push('reconnect'),
    },
    ...setup.deps,
  };
  wss.on('connection', (ws, req) => {
    const token = decodeURIComponent((req.url ?? '').split('/').at(-1) ?? '');
    const grant: StreamGrant = {
      companyId: 'acme',
      callSid: CALL_SID,
      transport: 'media',
      expiresAt: Date.now() + 30_000,
      ...grants.get(token),
    };
    handleMediaSocket(ws, grant, token, deps, setup.options ?? {});
  });
  const server: Server = {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/twilio/media`,
    wss,
    sessions,
    stt,
    speech,
    costs,
    lines,
    observed,
    grant: (token, grant) => grants.set(token, grant),
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
  servers.push(server);
  return server;
}

interface Twilio {
  readonly ws: WebSocket;
  readonly token: string;
  /** Every text message the server sent, parsed. */
  readonly received: Record<string, unknown>[];
  readonly closed: Promise<{ code: number; reason: string; at: number }>;
  /** 'immediate': echo each mark as it arrives (the audio "played" at once); 'manual': echoMarks(). */
  echo: 'immediate' | 'manual';
  send(frame: unknown): void;
  sendRaw(data: string | Buffer): void;
  connected(): void;
  start(overrides?: { callSid?: string; token?: string | null; encoding?: string }): void;
  media(bytes: Uint8Array, track?: 'inbound' | 'outbound', streamSid?: string): void;
  dtmf(digit: string): void;
  stop(): void;
  /** Echoes the marks received and not yet echoed (Twilio does this as audio plays, and on clear). */
  echoMarks(count?: number): void;
  byEvent(event: string): Record<string, unknown>[];
}

async function connectTwilio(
  server: Server,
  clientOptions: { autoPong?: boolean; grant?: Partial<StreamGrant> } = {},
): Promise<Twilio> {
  const token = `tok-${randomUUID()}`;
  if (clientOptions.grant !== undefined) server.grant(token, clientOptions.grant);
  const ws = new WebSocket(`${server.url}/${token}`, {
    perMessageDeflate: false,
    ...(clientOptions.autoPong === undefined ? {} : { autoPong: clientOptions.autoPong }),
  });
  const received: Record<string, unknown>[] = [];
  const pendingMarks: string[] = [];
  let seq = 0;
  let chunk = 0;
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) => {
    ws.on('close', (code, reason) =>
      resolve({ code, reason: reason.toString('utf8'), at: performance.now() }),
    );
  });
  ws.on('error', () => undefined);
  const send = (frame: unknown) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  };
  const twilio: Twilio = {
    ws,
    token,
    received,
    closed,
    echo: 'immediate',
    send,
    sendRaw: (data) => {
      if (ws.readyState === ws.OPEN) ws.send(data);
    },
    connected: () => send({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
    start: (o = {}) =>
      send({
        event: 'start',
        sequenceNumber: String(++seq),
        start: {
          accountSid: 'AC0123',
          streamSid: STREAM_SID,
          callSid: o.callSid ?? CALL_SID,
          tracks: ['inbound'],
          ...(o.token === null ? {} : { customParameters: { token: o.token ?? token, company: 'acme' } }),
          mediaFormat: { encoding: o.encoding ?? 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
        streamSid: STREAM_SID,
      }),
    media: (bytes, track = 'inbound', streamSid = STREAM_SID) =>
      send({
        event: 'media',
        sequenceNumber: String(++seq),
        media: {
          track,
          chunk: String(++chunk),
          timestamp: String(chunk * 20),
          payload: Buffer.from(bytes).toString('base64'),
        },
        streamSid,
      }),
    dtmf: (digit) =>
      send({
        event: 'dtmf',
        streamSid: STREAM_SID,
        sequenceNumber: String(++seq),
        dtmf: { track: 'inbound_track', digit },
      }),
    stop: () =>
      send({
        event: 'stop',
        sequenceNumber: String(++seq),
        stop: { accountSid: 'AC0123', callSid: CALL_SID },
        streamSid: STREAM_SID,
      }),
    echoMarks: (count = Infinity) => {
      for (let i = 0; i < count && pendingMarks.length > 0; i++) {
        const name = pendingMarks.shift()!;
        send({ event: 'mark', sequenceNumber: String(++seq), streamSid: STREAM_SID, mark: { name } });
      }
    },
    byEvent: (event) => received.filter((m) => m.event === event),
  };
  ws.on('message', (data) => {
    const message = JSON.parse((data as Buffer).toString('utf8')) as Record<string, unknown>;
    received.push(message);
    if (message.event === 'mark') {
      pendingMarks.push((message.mark as { name: string }).name);
      if (twilio.echo === 'immediate') twilio.echoMarks();
    }
    // `clear` flushes the buffered audio and sends back every pending mark.
    if (message.event === 'clear') twilio.echoMarks();
  });
  await once(ws, 'open');
  return twilio;
}

async function startCall(server: Server, clientOptions?: { autoPong?: boolean }) {
  const opened = server.sessions.length;
  const twilio = await connectTwilio(server, clientOptions);
  twilio.connected();
  twilio.start();
  await waitFor(() => server.sessions.length > opened && server.sessions[opened]!.callSid !== null);
  return { twilio, session: server.sessions[opened]! };
}

/** The text each outbound audio frame belongs to, run-length, with marks and clears between. */
function audioRuns(server: Server, twilio: Twilio): string[] {
  const texts = new Map(server.speech.calls.map((c) => [server.speech.byteFor(c.text), c.text]));
  const runs: string[] = [];
  let lastAudio: string | null = null;
  for (const m of twilio.received) {
    if (m.event === 'media') {
      const byte = Buffer.from((m.media as { payload: string }).payload, 'base64')[0]!;
      const text = texts.get(byte) ?? `byte ${byte}`;
      if (lastAudio !== text) runs.push(text);
      lastAudio = text;
      continue;
    }
    lastAudio = null;
    if (m.event === 'mark') runs.push(`mark ${(m.mark as { name: string }).name}`);
    else if (m.event === 'clear') runs.push('clear');
  }
  return runs;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe('handleMediaSocket: a call', () => {
  it('opens the call on start and says its replies as whole 160-byte frames on the stream, a mark after each sentence', async () => {
    const server = await startServer({
      script: { onStart: (s) => s.say(THREE, 0) },
      speech: { chunks: 2, framesPerChunk: 2 },
    });
    const { twilio, session } = await startCall(server);
    await waitFor(() => session.done.includes(0));

    expect(session.events[0]).toEqual({ type: 'twilio.start', callSid: CALL_SID });
    expect(audioRuns(server, twilio)).toEqual([S1, 'mark g1.0.0', S2, 'mark g1.0.1', S3, 'mark g1.0.2']);
    for (const m of twilio.byEvent('media')) {
      expect(Object.keys(m).sort()).toEqual(['event', 'media', 'streamSid']);
      expect(m.streamSid).toBe(STREAM_SID);
      const media = m.media as Record<string, unknown>;
      expect(Object.keys(media)).toEqual(['payload']);
      expect(Buffer.from(media.payload as string, 'base64').length).toBe(160);
    }
    for (const m of twilio.byEvent('mark')) {
      expect(Object.keys(m).sort()).toEqual(['event', 'mark', 'streamSid']);
      expect(m.streamSid).toBe(STREAM_SID);
    }
    expect(twilio.byEvent('media')).toHaveLength(12);
    expect(session.heard).toEqual([{ turn: 0, heard: THREE, interrupted: false }]);
    expect(server.speech.calls[0]!.request).toMatchObject({
      voice: 'verse',
      cacheable: false,
      billing: { companyId: 'acme', callId: session.id, callSid: CALL_SID, turn: 0 },
    });
    // Trace frames are for the test client only.
    expect(twilio.received.filter((m) => String(m.event).startsWith('switchboard.'))).toEqual([]);
    twilio.stop();
    expect((await twilio.closed).code).toBe(1000);
    expect(session.stopReason).toBe('stream-stopped');
  });

  it('lets the STT hold audio while no utterance can be ending: 1.5 s after the voice, or once the STT closed the utterance, and in voiced speech', async () => {
    const server = await startServer();
    const { twilio, session } = await startCall(server);
    const stt = server.stt.sessions[0]!;
    const send = async (frame: Uint8Array, n: number) => {
      const before = stt.frames;
      for (let i = 0; i < n; i++) twilio.media(frame);
      await waitFor(() => stt.frames === before + n);
    };
    // From the stream's start: relaxed once 75 frames (1.5 s of audio) carried no voice, not before.
    await send(SILENCE, 74);
    expect(stt.relaxed).toEqual([]);
    await send(SILENCE, 1);
    expect(stt.relaxed).toEqual([{ afterFrames: 75, relaxed: true }]);
    // Voiced speech: still relaxed (its end is at least the STT's silence window away).
    await send(LOUD, 10);
    expect(session.events.filter((e) => e.type === 'caller.speechStarted')).toHaveLength(1);
    expect(stt.relaxed).toHaveLength(1);
    // The first quiet frame in speech may begin its end: not relaxed, at once.
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 86, relaxed: false });
    // Without word from the STT: relaxed 1.5 s of audio after the last voice (frame 85), not before.
    await send(SILENCE, 73);
    expect(stt.relaxed).toHaveLength(2);
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 160, relaxed: true });

    // The next utterance, which the STT closes itself: relaxed as soon as the local VAD is done too.
    await send(LOUD, 10);
    stt.callbacks.onSpeechStarted();
    await send(SILENCE, 10); // the VAD's hangover: speech may still go on
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 171, relaxed: false });
    stt.callbacks.onSpeechStopped('vad');
    await send(SILENCE, 9);
    expect(stt.relaxed).toHaveLength(4);
    await send(SILENCE, 1); // 400 ms of quiet: the VAD stops, 1.1 s before the fallback
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 190, relaxed: true });
    expect(stt.relaxed).toHaveLength(5);

    // A dropped STT socket ends its utterance too, but that is no end of the caller's: only the
    // fallback relaxes then.
    await send(LOUD, 10);
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 201, relaxed: false });
    stt.callbacks.onSpeechStopped('disconnected');
    await send(SILENCE, 73);
    expect(stt.relaxed).toHaveLength(6);
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 275, relaxed: true });

    // A voice too soft for the local VAD that the STT hears: not relaxed from its speech start to
    // its stop, however long ago the local VAD last heard a voice.
    stt.callbacks.onSpeechStarted();
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 276, relaxed: false });
    await send(SILENCE, 100);
    expect(stt.relaxed).toHaveLength(8);
    stt.callbacks.onSpeechStopped('vad');
    await send(SILENCE, 1);
    expect(stt.relaxed.at(-1)).toEqual({ afterFrames: 377, relaxed: true });
    expect(session.events.filter((e) => e.type === 'caller.speechStarted')).toHaveLength(3);
    twilio.stop();
    await twilio.closed;
  });

  it('barge-in: the local VAD raises caller.speechStarted within 100 ms of speech; stopping the reply clears Twilio and aborts TTS; heard = what played', async () => {
    const server = await startServer({
      script: { onStart: (s) => s.say(THREE, 0) },
      // S3 is still being synthesized when the caller talks over the reply.
      speech: { chunks: 2, framesPerChunk: 2, delayMs: (t) => (t === S3 ? 2000 : 0) },
    });
    const twilio = await connectTwilio(server);
    twilio.echo = 'manual';
    twilio.connected();
    twilio.start();
    await waitFor(() => twilio.byEvent('mark').length === 2);
    const session = server.sessions[0]!;
    twilio.echoMarks(1); // S1 has played; S2 is still in Twilio's buffer
    await waitFor(() => server.sessions[0]!.events.length === 1 && twilio.byEvent('mark').length === 2);
    await pause(20);

    const quiet = 25;
    for (let i = 0; i < quiet; i++) twilio.media(SILENCE);
    for (let i = 0; i < 20; i++) twilio.media(LOUD);
    await waitFor(() => session.events.some((e) => e.type === 'caller.speechStarted'));
    const started = session.arrivals.find((a) => a.type === 'caller.speechStarted')!;
    // Audio time from the onset (first loud frame) to the event: at most 5 frames = 100 ms.
    const loudFrames = started.sttFrames - quiet;
    expect(loudFrames).toBeGreaterThan(0);
    expect(loudFrames * 20).toBeLessThanOrEqual(100);

    await waitFor(() => twilio.byEvent('clear').length === 1);
    expect(twilio.byEvent('clear')[0]).toEqual({ event: 'clear', streamSid: STREAM_SID });
    const s3 = server.speech.calls.find((c) => c.text === S3)!;
    expect(s3.request.signal.aborted).toBe(true);
    await waitFor(() => s3.ended);
    expect(s3.yielded).toBe(0);
    await waitFor(() => session.heard.length === 1);
    // The echo of the flushed S2 mark came back after the clear: it does not count as heard.
    await pause(30);
    expect(session.heard).toEqual([{ turn: 0, heard: S1, interrupted: true }]);
    expect(session.done).toEqual([]);
    expect(server.observed.bargeIns).toHaveLength(1);
    expect(server.observed.bargeIns[0]!.reactionMs).toBeGreaterThanOrEqual(0);
    expect(server.observed.bargeIns[0]!.reactionMs).toBeLessThan(2000);

    // The next reply's audio follows the clear and completes on its own marks.
    twilio.echo = 'immediate';
    session.say('Sorry, please go ahead.', 1, true);
    await waitFor(() => session.done.includes(1));
    expect(audioRuns(server, twilio)).toEqual([
      S1,
      'mark g1.0.0',
      S2,
      'mark g1.0.1',
      'clear',
      'Sorry, please go ahead.',
      'mark g2.1.0',
    ]);
    expect(session.heard[1]).toEqual({ turn: 1, heard: 'Sorry, please go ahead.', interrupted: false });
  });

  it('forwards DTMF digits, and refuses a digit the protocol does not have', async () => {
    const server = await startServer();
    const { twilio, session } = await startCall(server);
    twilio.dtmf('5');
    twilio.dtmf('#');
    twilio.send({
      event: 'dtmf',
      streamSid: STREAM_SID,
      sequenceNumber: '9',
      dtmf: { track: 'inbound_track', digit: 'X' },
    });
    await waitFor(() => server.observed.invalid.length === 1);
    await waitFor(() => session.events.filter((e) => e.type === 'caller.dtmf').length === 2);
    expect(session.events.filter((e) => e.type === 'caller.dtmf')).toEqual([
      { type: 'caller.dtmf', digit: '5' },
      { type: 'caller.dtmf', digit: '#' },
    ]);
  });

  it('turns STT callbacks into caller events: one speechStarted per utterance, partials, non-empty finals', async () => {
    const server = await startServer();
    const { twilio, session } = await startCall(server);
    const stt = server.stt.sessions[0]!.callbacks;
    // STT hears speech the local VAD did not (quiet speech): it is the barge-in trigger then.
    stt.onSpeechStarted();
    stt.onSpeechStopped('vad');
    // Loud audio after a quiet line: the local VAD fires first; STT's own start for the same
    // utterance is dropped.
    for (let i = 0; i < 10; i++) twilio.media(SILENCE);
    for (let i = 0; i < 10; i++) twilio.media(LOUD);
    await waitFor(() => session.events.filter((e) => e.type === 'caller.speechStarted').length === 2);
    stt.onSpeechStarted();
    stt.onPartial('book a');
    stt.onSpeechStopped('vad');
    stt.onFinal('', { utteranceId: '1', latencyMs: 10 });
    stt.onFinal('book a visit', { utteranceId: '2', latencyMs: 10 });
    expect(session.events.slice(1).map((e) => e.type)).toEqual([
      'caller.speechStarted',
      'caller.speechStopped',
      'caller.speechStarted',
      'caller.transcriptPartial',
      'caller.speechStopped',
      'caller.transcriptFinal',
    ]);
    expect(session.events.at(-1)).toEqual({ type: 'caller.transcriptFinal', text: 'book a visit' });
    expect(session.events).toContainEqual({ type: 'caller.transcriptPartial', text: 'book a' });
    // Outbound-track frames are not the caller.
    const before = server.stt.sessions[0]!.frames;
    twilio.media(LOUD, 'outbound');
    twilio.dtmf('1');
    await waitFor(() => session.events.at(-1)?.type === 'caller.dtmf');
    expect(server.stt.sessions[0]!.frames).toBe(before);
  });

  it('a fatal STT failure hangs up (stt-failed); a non-fatal one is only reported', async () => {
    const handoffs = fakeHandoffs();
    const server = await startServer({ deps: { handoffs: handoffs.store } });
    const { twilio, session } = await startCall(server);
    const stt = server.stt.sessions[0]!.callbacks;
    stt.onError(new SttError('ERR_STT_CONNECTION', 'connection lost; reconnecting', { fatal: false }));
    await pause(20);
    expect(session.ended).toBe(false);
    stt.onError(new SttError('ERR_STT_HTTP', 'refused: HTTP 401', { fatal: true, status: 401 }));
    const closed = await twilio.closed;
    expect(closed.code).toBe(1000);
    expect(session.stopReason).toBe('stt-failed');
    expect(handoffs.puts).toEqual([
      expect.objectContaining({ callSid: CALL_SID, handoff: { action: 'hangup' } }),
    ]);
    expect(closed.at).toBeGreaterThanOrEqual(handoffs.puts[0]!.storedAt!);
    expect(server.stt.sessions[0]!.closed).toBe(true);
    expect(server.observed.sttErrors).toEqual(['ERR_STT_CONNECTION', 'reconnect', 'ERR_STT_HTTP:fatal']);
    expect(
      server.lines.some((l) => l.includes('speech recognition failed') && l.includes('ERR_STT_HTTP')),
    ).toBe(true);
  });
});

describe('handleMediaSocket: transfer and hangup', () => {
  const transferOn = (digit: string, number: string | undefined): Script => ({
    onEvent: (s, e) => {
      if (e.type === 'caller.dtmf' && e.digit === digit) {
        s.transport.transfer(number, 'caller-asked');
        // The machine ends the call right after emitting the transfer.
        s.stop('transfer');
      }
    },
  });

  it('transfers through Twilio call control, then closes the stream', async () => {
    const control = fakeCallControl();
    const handoffs = fakeHandoffs();
    const server = await startServer({
      script: transferOn('0', '+15550009999'),
      deps: { callControl: control.control, handoffs: handoffs.store },
    });
    const { twilio } = await startCall(server);
    twilio.dtmf('0');
    const closed = await twilio.closed;
    expect(closed.code).toBe(1000);
    expect(control.calls).toEqual([
      expect.objectContaining({ action: 'transfer', callSid: CALL_SID, number: '+15550009999' }),
    ]);
    expect(closed.at).toBeGreaterThanOrEqual(control.calls[0]!.settledAt!);
    expect(handoffs.puts).toEqual([]);
    for (const line of server.lines) expect(line).not.toContain('5550009999');
  });

  it('without call control, leaves a handoff note before closing (the <Connect action> webhook dials)', async () => {
    const handoffs = fakeHandoffs(40);
    const server = await startServer({
      script: transferOn('0', '+15550009999'),
      deps: { handoffs: handoffs.store },
    });
    const { twilio } = await startCall(server);
    twilio.dtmf('0');
    const closed = await twilio.closed;
    expect(closed.code).toBe(1000);
    expect(handoffs.puts).toEqual([
      expect.objectContaining({ callSid: CALL_SID, handoff: { action: 'transfer', number: '+15550009999' } }),
    ]);
    // The note is stored before Twilio can ask for it.
    expect(closed.at).toBeGreaterThanOrEqual(handoffs.puts[0]!.storedAt!);
  });

  it('a transfer with no number hangs up; a failing call control falls back to the note', async () => {
    const handoffs = fakeHandoffs();
    const server = await startServer({
      script: transferOn('0', undefined),
      deps: { handoffs: handoffs.store },
    });
    const { twilio } = await startCall(server);
    twilio.dtmf('0');
    await twilio.closed;
    expect(handoffs.puts.map((p) => p.handoff)).toEqual([{ action: 'hangup' }]);

    const control = fakeCallControl({ fail: true });
    const handoffs2 = fakeHandoffs();
    const server2 = await startServer({
      script: transferOn('9', '+15550001111'),
      deps: { callControl: control.control, handoffs: handoffs2.store },
    });
    const call = await startCall(server2);
    call.twilio.dtmf('9');
    expect((await call.twilio.closed).code).toBe(1000);
    expect(control.calls).toHaveLength(1);
    expect(handoffs2.puts.map((p) => p.handoff)).toEqual([{ action: 'transfer', number: '+15550001111' }]);
  });

  it('hangs up through call control', async () => {
    const control = fakeCallControl();
    const server = await startServer({
      script: {
        onEvent: (s, e) => {
          if (e.type === 'caller.dtmf') {
            s.transport.hangup('completed');
            s.stop('completed');
          }
        },
      },
      deps: { callControl: control.control },
    });
    const { twilio, session } = await startCall(server);
    twilio.dtmf('*');
    expect((await twilio.closed).code).toBe(1000);
    expect(control.calls).toEqual([expect.objectContaining({ action: 'hangup', callSid: CALL_SID })]);
    expect(session.stopReason).toBe('completed');
  });

  it('hangs up through a handoff note when the call cannot be opened', async () => {
    const handoffs = fakeHandoffs();
    const server = await startServer({
      deps: {
        handoffs: handoffs.store,
        openCall: () => {
          throw new Error('unknown company acme');
        },
      },
    });
    const twilio = await connectTwilio(server);
    twilio.connected();
    twilio.start();
    const closed = await twilio.closed;
    expect(closed.code).toBe(1000);
    expect(handoffs.puts).toEqual([
      expect.objectContaining({ callSid: CALL_SID, handoff: { action: 'hangup' } }),
    ]);
    expect(server.stt.sessions).toEqual([]);
  });
});

describe('handleMediaSocket: protocol hygiene', () => {
  it('closes with 1008 when start does not arrive in time', async () => {
    const server = await startServer({ options: { startTimeoutMs: 50 } });
    const twilio = await connectTwilio(server);
    twilio.connected();
    const closed = await twilio.closed;
    expect(closed).toMatchObject({ code: 1008, reason: 'start timeout' });
    expect(server.sessions).toEqual([]);
  });

  it('closes with 1008 when start is for another call, has the wrong token or none, or is not μ-law 8 kHz', async () => {
    const server = await startServer();
    const cases: [Parameters<Twilio['start']>[0], string][] = [
      [{ callSid: 'CA_other' }, 'call mismatch'],
      [{ token: 'tok-forged' }, 'call mismatch'],
      [{ token: null }, 'call mismatch'],
      [{ encoding: 'audio/l16' }, 'unsupported media format'],
    ];
    for (const [overrides, reason] of cases) {
      const twilio = await connectTwilio(server);
      twilio.connected();
      twilio.start(overrides);
      expect(await twilio.closed).toMatchObject({ code: 1008, reason });
    }
    expect(server.sessions).toEqual([]);
    // A grant without a CallSid (a test client) accepts any call with the right token.
    const twilio = await connectTwilio(server, { grant: { callSid: null } });
    twilio.connected();
    twilio.start({ callSid: 'CA_any' });
    await waitFor(() => server.sessions.length === 1);
    expect(server.sessions[0]!.events[0]).toEqual({ type: 'twilio.start', callSid: 'CA_any' });
  });

  it('counts invalid frames without resetting on valid ones, closing with 1008 at the bound; logs reasons, never payloads', async () => {
    const server = await startServer({ options: { maxInvalidFrames: 5 } });
    const twilio = await connectTwilio(server);
    const secret = 'card 4111111111111111';
    twilio.sendRaw(`{"event":"media","payload":"${secret}`); // not JSON
    twilio.media(LOUD); // media before start
    twilio.connected();
    twilio.start();
    await waitFor(() => server.sessions.length === 1);
    const session = server.sessions[0]!;
    twilio.sendRaw(Buffer.from(secret)); // binary
    twilio.media(LOUD);
    twilio.media(LOUD, 'inbound', 'MZ_someone_else'); // another stream
    twilio.dtmf('1');
    twilio.send({ event: 'transcript', text: secret }); // undocumented: ignored, not counted
    await waitFor(() => session.events.some((e) => e.type === 'caller.dtmf'));
    expect(twilio.ws.readyState).toBe(WebSocket.OPEN);
    expect(server.observed.invalid).toEqual([
      'not JSON',
      'media before start',
      'binary frame',
      'media for another stream',
    ]);
    twilio.start(); // a second start
    expect(await twilio.closed).toMatchObject({ code: 1008, reason: 'too many invalid frames' });
    expect(session.stopReason).toBe('protocol-violation');
    for (const line of server.lines) expect(line).not.toContain('4111');
    expect(server.lines.filter((l) => l.includes('invalid media stream frame'))).toHaveLength(5);
  });

  it('survives a fuzz of malformed frames: the process stays up and each socket closes with 1008', async () => {
    const server = await startServer({ options: { maxInvalidFrames: 5 } });
    const malformedText = fc
      .oneof(
        fc.string(),
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.json(),
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ event: 'media', ...(v as object) })),
        fc
          .tuple(fc.constantFrom('start', 'media', 'mark', 'dtmf', 'stop'), fc.jsonValue({ maxDepth: 2 }))
          .map(([event, body]) => JSON.stringify({ event, streamSid: STREAM_SID, [event]: body })),
      )
      .filter((text) => {
        const parsed = parseMediaFrame(text);
        return !parsed.ok && !parsed.unknownEvent;
      });
    const frame = fc.oneof(
      { arbitrary: malformedText.map((text) => ({ text })), weight: 4 },
      { arbitrary: fc.uint8Array({ minLength: 0, maxLength: 64 }).map((binary) => ({ binary })), weight: 1 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(frame, { minLength: 5, maxLength: 12 }),
        async (started, frames) => {
          const twilio = await connectTwilio(server);
          if (started) {
            twilio.connected();
            twilio.start();
          }
          for (const f of frames) twilio.sendRaw('text' in f ? f.text : Buffer.from(f.binary));
          const closed = await twilio.closed;
          expect(closed.code).toBe(1008);
        },
      ),
      { numRuns: 60 },
    );
    // Still serving calls.
    const { twilio, session } = await startCall(server);
    twilio.dtmf('3');
    await waitFor(() => session.events.some((e) => e.type === 'caller.dtmf'));
  }, 60_000);

  it('a throw while handling a frame closes that call with 1011, not the process', async () => {
    const server = await startServer({
      script: {
        onEvent: (_s, e) => {
          if (e.type === 'caller.dtmf') throw new Error('a bug in the session');
        },
      },
    });
    const { twilio, session } = await startCall(server);
    twilio.dtmf('7');
    expect(await twilio.closed).toMatchObject({ code: 1011, reason: 'internal error' });
    expect(session.stopReason).toBe('internal-error');
    expect(server.stt.sessions[0]!.closed).toBe(true);
  });

  it('terminates a socket that answers no ping; keeps one that does', async () => {
    const server = await startServer({ options: { heartbeatMs: 100 } });
    const live = await startCall(server);
    const deaf = await startCall(server, { autoPong: false });
    const closed = await deaf.twilio.closed;
    expect(closed.code).toBe(1006); // terminated: no close frame
    await waitFor(() => deaf.session.ended);
    expect(deaf.session.stopReason).toBe('socket-closed');
    expect(live.twilio.ws.readyState).toBe(WebSocket.OPEN);
    expect(live.session.ended).toBe(false);
  });
});

describe('handleMediaSocket: trace frames', () => {
  it('sends switchboard.audio, .heard and .turn frames when traced', async () => {
    const server = await startServer({
      options: { trace: true },
      speech: { chunks: 1, framesPerChunk: 2, firstAudioMs: 42 },
      script: {
        onStart: (s) => s.say('Hello, thanks for calling.', 0, true),
        onEvent: (s, e) => {
          if (e.type === 'caller.transcriptFinal') s.say(S1, 1);
        },
      },
    });
    const { twilio, session } = await startCall(server);
    await waitFor(() => session.done.includes(0));
    const stt = server.stt.sessions[0]!.callbacks;
    stt.onSpeechStopped('vad');
    await pause(15);
    stt.onFinal('book a visit', { utteranceId: '1', latencyMs: 15 });
    await waitFor(() => session.done.includes(1));
    session.transport.trace({
      record: { turn: 1 } as never,
      latencyMs: 120,
      engineMs: 20,
      costUsd: 0.001,
      costEstimated: false,
    });
    await waitFor(() => twilio.byEvent('switchboard.turn').length === 1);

    const audio = twilio.byEvent('switchboard.audio');
    expect(audio).toHaveLength(2);
    expect(audio[0]).toEqual({
      event: 'switchboard.audio',
      streamSid: STREAM_SID,
      turn: 0,
      source: 'cache',
      speechStoppedToFinalMs: null,
      finalToFirstAudioMs: null,
      ttsFirstAudioMs: 42,
      speechStoppedToFirstAudioMs: null,
    });
    const a1 = audio[1] as {
      speechStoppedToFinalMs: number;
      finalToFirstAudioMs: number;
      speechStoppedToFirstAudioMs: number;
    };
    expect(a1).toMatchObject({ turn: 1, source: 'tts', ttsFirstAudioMs: 42 });
    expect(a1.speechStoppedToFinalMs).toBeGreaterThanOrEqual(10);
    expect(a1.finalToFirstAudioMs).toBeGreaterThanOrEqual(0);
    expect(a1.speechStoppedToFirstAudioMs).toBeGreaterThanOrEqual(
      a1.speechStoppedToFinalMs + a1.finalToFirstAudioMs - 0.2,
    );
    expect(twilio.byEvent('switchboard.heard')).toEqual([
      {
        event: 'switchboard.heard',
        streamSid: STREAM_SID,
        turn: 0,
        heard: 'Hello, thanks for calling.',
        interrupted: false,
      },
      { event: 'switchboard.heard', streamSid: STREAM_SID, turn: 1, heard: S1, interrupted: false },
    ]);
    expect(twilio.byEvent('switchboard.turn')[0]).toMatchObject({
      streamSid: STREAM_SID,
      trace: { latencyMs: 120, engineMs: 20, costUsd: 0.001 },
    });
    expect(server.observed.audio.map((a) => a.turn)).toEqual([0, 1]);
  });
});

describe('handleMediaSocket: with the real OpenAI realtime STT adapter', () => {
  let fake: FakeRealtimeServer | null = null;
  afterEach(async () => {
    await fake?.close();
    fake = null;
  });

  it('turns the caller audio into speech edges and a transcript, and bills the audio to the call', async () => {
    fake = await startFakeRealtimeServer({ apiKey: 'sk-test' });
    const stt = createOpenAiRealtimeStt({ apiKey: 'sk-test', baseURL: fake.baseURL, pingIntervalMs: 0 });
    const server = await startServer({ stt });
    const { twilio, session } = await startCall(server);
    const frames = 10 + 15 + 15;
    for (let i = 0; i < 10; i++) twilio.media(SILENCE);
    for (let i = 0; i < 15; i++) twilio.media(LOUD);
    for (let i = 0; i < 15; i++) twilio.media(SILENCE);
    await waitFor(() => session.events.some((e) => e.type === 'caller.transcriptFinal'));
    const types = session.events.map((e) => e.type);
    // One speechStarted: the local VAD's; the server VAD's start for the same speech is not repeated.
    expect(types.filter((t) => t === 'caller.speechStarted')).toHaveLength(1);
    expect(types).toContain('caller.speechStopped');
    expect(types).toContain('caller.transcriptPartial');
    expect(types.indexOf('caller.speechStarted')).toBeLessThan(types.indexOf('caller.speechStopped'));
    expect(types.indexOf('caller.speechStopped')).toBeLessThan(types.indexOf('caller.transcriptFinal'));
    expect(session.events.find((e) => e.type === 'caller.transcriptFinal')).toEqual({
      type: 'caller.transcriptFinal',
      text: 'hello there',
    });
    // The μ-law bytes reached the provider untouched and in order: the silence in pairs (5 appends),
    // the first two loud frames as a pair before the VAD hears speech (1), the voiced frames held
    // (a batch of 25 is not full) until the first quiet frame sends them with it (1), the quiet that
    // may end the utterance in pairs again (7).
    const connection = await fake.connection(0);
    await waitFor(() => connection.appends.length === 14);
    expect(connection.appends.map((a) => Buffer.from(a, 'base64').length / 160)).toEqual([
      2, 2, 2, 2, 2, 2, 14, 2, 2, 2, 2, 2, 2, 2,
    ]);
    const sent = Buffer.concat(connection.appends.map((a) => Buffer.from(a, 'base64')));
    const expected = Buffer.concat([
      ...Array.from({ length: 10 }, () => SILENCE),
      ...Array.from({ length: 15 }, () => LOUD),
      ...Array.from({ length: 15 }, () => SILENCE),
    ]);
    expect(sent.equals(expected)).toBe(true);

    twilio.stop();
    await twilio.closed;
    await waitFor(() => connection.closed !== null);
    expect(server.costs.length).toBeGreaterThanOrEqual(1);
    for (const cost of server.costs) {
      expect(cost).toMatchObject({
        companyId: 'acme',
        callId: session.id,
        callSid: CALL_SID,
        turn: null,
        purpose: 'stt',
        action: 'completed',
        provider: 'openai',
        model: 'gpt-4o-transcribe',
      });
    }
    // The utterance's report carries the provider's own duration; the rest is billed at close.
    expect(server.costs[0]!.estimated).toBe(false);
    expect(server.costs.reduce((ms, c) => ms + c.audioMs!, 0)).toBe(frames * 20);
  });
});

describe('handleMediaSocket: with the batch transcription STT adapter', () => {
  let fake: FakeAudioServer | null = null;
  afterEach(async () => {
    await fake?.close();
    fake = null;
  });

  it('bills each uploaded utterance to the call, exactly as the provider-level report says', async () => {
    fake = await startFakeAudioServer();
    const providerReports: SttUsage[] = [];
    const stt = createHttpTranscriptionStt({
      apiKey: 'sk-test',
      baseURL: fake.baseURL,
      onUsage: (u) => providerReports.push(u),
      createVad: () => localSegmentingVad(),
    });
    const server = await startServer({ stt });
    const { twilio, session } = await startCall(server);
    for (let i = 0; i < 10; i++) twilio.media(SILENCE);
    for (let i = 0; i < 15; i++) twilio.media(LOUD);
    for (let i = 0; i < 30; i++) twilio.media(SILENCE);
    await waitFor(() => session.events.some((e) => e.type === 'caller.transcriptFinal'));
    expect(session.events.find((e) => e.type === 'caller.transcriptFinal')).toEqual({
      type: 'caller.transcriptFinal',
      text: 'fake transcript',
    });
    expect(providerReports).toHaveLength(1);
    expect(server.costs).toHaveLength(1);
    expect(server.costs[0]).toMatchObject({
      callId: session.id,
      callSid: CALL_SID,
      purpose: 'stt',
      model: providerReports[0]!.model,
      costUsd: providerReports[0]!.costUsd,
      audioMs: Math.round(providerReports[0]!.audioSeconds * 1000),
      estimated: false,
    });
    expect(server.costs[0]!.audioMs).toBeGreaterThan(0);
  });
});

describe('handleMediaSocket: cleanup', () => {
  it('opens and stops 1,000 calls and leaves no timer, socket or session behind', async () => {
    let started = 0;
    const server = await startServer({
      // Every other call is still synthesizing its greeting when Twilio stops the stream.
      speech: { chunks: 2, framesPerChunk: 1, delayMs: (t) => (t.includes('slow') ? 5_000 : 0) },
      script: { onStart: (s) => s.say(++started % 2 ? 'A slow greeting.' : 'Hi.', 0) },
    });
    const resources = () => {
      const counts = new Map<string, number>();
      for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
      return counts;
    };
    const runCall = async () => {
      const twilio = await connectTwilio(server);
      twilio.connected();
      twilio.start();
      for (let i = 0; i < 5; i++) twilio.media(i % 2 ? LOUD : SILENCE);
      twilio.dtmf('1');
      twilio.stop();
      const closed = await twilio.closed;
      expect(closed.code).toBe(1000);
    };
    await runCall(); // warm up (module loads, first-use allocations)
    await waitFor(() => server.wss.clients.size === 0);
    await pause(100);
    const before = resources();

    const calls = 1000;
    const batch = 50;
    for (let i = 0; i < calls; i += batch) await Promise.all(Array.from({ length: batch }, runCall));
    await waitFor(() => server.wss.clients.size === 0);
    // Closing handshakes settle a moment after the last close event; a leak never does.
    const settled = (kind: string) => (resources().get(kind) ?? 0) <= (before.get(kind) ?? 0);
    await waitFor(() => settled('Timeout') && settled('TCPSocketWrap'), 5000, 'no leaked timers or sockets');
    expect(server.sessions).toHaveLength(calls + 1);
    expect(server.sessions.every((s) => s.ended)).toBe(true);
    expect(server.sessions.every((s) => s.stopReason === 'stream-stopped')).toBe(true);
    expect(server.sessions.every((s) => s.events.some((e) => e.type === 'caller.dtmf'))).toBe(true);
    expect(server.stt.sessions.every((s) => s.closed)).toBe(true);
    expect(server.speech.calls.length).toBeGreaterThan(calls / 2);
    expect(server.speech.calls.every((c) => c.ended)).toBe(true);
    expect(server.speech.pendingTimers).toBe(0);
    expect(
      server.speech.calls.filter((c) => c.text === 'A slow greeting.').every((c) => c.request.signal.aborted),
    ).toBe(true);
  }, 120_000);
});
