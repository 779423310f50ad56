/**
 * Simulated Twilio callers on bidirectional Media Streams, many sockets in one process. Each caller
 * does what Twilio does: POSTs the voice webhook, reads `<Stream url>` and its `<Parameter>`s from
 * the TwiML, opens the WebSocket, sends `connected` and `start`, then streams inbound `media` frames
 * (20 ms of μ-law, sequenceNumber/chunk/timestamp as strings) at exactly 50 frames/s for the whole
 * call. It plays a scripted conversation: an utterance (speech frames), then silence while the
 * reply plays, a pause, the next utterance. Outbound audio feeds a simulated playback clock per
 * caller: `mark`s are echoed when the audio before them would have finished playing, `clear` empties
 * the playback and echoes the pending marks at once, as Twilio does.
 *
 * One drift-free timer paces every caller: it ticks every 5 ms against a fixed epoch, and the
 * callers are spread over the four 5 ms slots of a 20 ms frame (so the server gets a steady stream,
 * not one burst per 20 ms), each tick sending the due frames of one slot's callers. A late tick
 * sends what it owes at once. Audio payloads are prepared base64 strings, so a frame costs only the
 * JSON string around it.
 *
 * Measured per window: frames sent late (the generator's own lag: a frame sent more than
 * `lateFrameMs` after its due time), the speech-end → first-audio latency of each turn (speech end =
 * when the last speech frame was sent), the spacing of the server's media frames within a reply,
 * and, when the server sends `switchboard.audio` trace frames, their per-stage timings.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import type { Summary } from '../stats.ts';
import { summarize } from '../stats.ts';
import { parseStreamTwiml as parseStreamAnswer } from '../../cli/mediaCall.ts';
import { TRACE_HEADER } from '../../twilio/relayProtocol.ts';
import { FRAME_MS } from './syntheticVoice.ts';

/** Per-stage timings of a `switchboard.audio` trace frame. */
export const TRACE_STAGES = [
  'speechStoppedToFinalMs',
  'finalToFirstAudioMs',
  'ttsFirstAudioMs',
  'speechStoppedToFirstAudioMs',
] as const;
export type TraceStage = (typeof TRACE_STAGES)[number];

/** The audio a caller sends, prepared once (base64 frames of 20 ms). */
export interface CallerAudio {
  readonly silence: string;
  /** Each utterance's speech frames; callers take them in turn. */
  readonly utterances: readonly (readonly string[])[];
}

export interface MediaCallersOptions {
  /** The server's base URL; the webhook is `POST {url}/twilio/voice`. */
  readonly url: string;
  /** The called number (the webhook's To). */
  readonly to: string;
  readonly callers: number;
  /** Callers connect evenly spread over this time. */
  readonly rampMs: number;
  readonly audio: CallerAudio;
  /** Delay before a caller's first utterance, drawn uniformly per caller (ms). */
  readonly firstSpeechMs: readonly [number, number];
  /** False: callers never speak, only stream silence and listen. Default true. */
  readonly speak?: boolean;
  /** Pause between the end of a reply's playback and the next utterance, drawn per turn (ms). */
  readonly pauseMs: readonly [number, number];
  /** With no audio back this long after an utterance, the caller counts no reply and speaks again. */
  readonly replyTimeoutMs: number;
  /** A frame sent later than this after its due time counts as late. Default 10. */
  readonly lateFrameMs?: number;
  /**
   * Which callers ask for `switchboard.audio` trace frames (TRACE_HEADER): every `traceEvery`-th
   * (the first, then every N-th after it); 0 = none. Default 1 (all). Real Twilio calls never ask, so
   * a bench that measures the server's cost asks on a sample only.
   */
  readonly traceEvery?: number;
}

/** What the callers saw over one window. */
export interface CallersWindow {
  readonly durationMs: number;
  readonly callers: number;
  /** Callers with an open stream at the end of the window. */
  readonly live: number;
  readonly framesSent: number;
  /** Frames sent more than `lateFrameMs` after their due time: the generator fell behind. */
  readonly lateFrames: number;
  readonly callersWithLateFrames: number;
  readonly maxFrameLatenessMs: number;
  /** How late the shared 5 ms tick fired. */
  readonly tickLatenessMs: Summary;
  readonly utterances: number;
  /** Utterances answered with no audio within `replyTimeoutMs`. */
  readonly noReply: number;
  /** Last speech frame sent → first media frame back, per turn. */
  readonly speechEndToFirstAudioMs: Summary;
  readonly outboundFrames: number;
  /** Within a reply: |arrival gap − the previous frame's audio duration|. */
  readonly outboundJitterMs: Summary;
  /** Within a reply: arrival gap between consecutive media frames. */
  readonly outboundGapMs: Summary;
  /** Per reply: audio ms delivered ÷ wall ms it took to arrive (1 = real time, above = faster). */
  readonly replySpeed: Summary;
  /**
   * Frames that arrived more than one frame (20 ms) after the audio before them had finished
   * playing: a gap the caller would hear unless Twilio's buffer covers it.
   */
  readonly underruns: number;
  readonly marksEchoed: number;
  readonly clears: number;
  /** `switchboard.audio` trace frames received, by the reply's audio source, and their stage timings. */
  readonly traces: number;
  readonly traceSources: Record<string, number>;
  readonly stages: Record<TraceStage, Summary>;
  readonly errors: Record<string, number>;
}

const TICK_MS = 5;
const SLOTS = FRAME_MS / TICK_MS;

/** Short, stable error labels. */
function label(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.slice(0, 60);
}

function between([min, max]: readonly [number, number]): number {
  return min + Math.random() * Math.max(0, max - min);
}

/** The `<Stream>` of a TwiML answer: its URL and `<Parameter>`s; null when it has none. */
export function parseStreamTwiml(twiml: string): { url: string; parameters: Record<string, string> } | null {
  try {
    const stream = parseStreamAnswer(twiml);
    return { url: stream.streamUrl, parameters: stream.parameters };
  } catch {
    return null;
  }
}

const MEDIA_PREFIX = '{"event":"media"';
const PAYLOAD_KEY = '"payload":"';

/** Bytes encoded by the base64 text between `start` and `end` of `s`. */
function base64Bytes(s: string, start: number, end: number): number {
  const n = end - start;
  let pad = 0;
  if (n > 0 && s.charCodeAt(end - 1) === 61) pad = n > 1 && s.charCodeAt(end - 2) === 61 ? 2 : 1;
  return (n * 3) / 4 - pad;
}

interface Recorder {
  framesSent: number;
  lateFrames: number;
  maxFrameLatenessMs: number;
  tickLateness: number[];
  utterances: number;
  noReply: number;
  latency: number[];
  outboundFrames: number;
  jitter: number[];
  gaps: number[];
  speed: number[];
  underruns: number;
  marksEchoed: number;
  clears: number;
  traces: number;
  traceSources: Record<string, number>;
  stages: Record<TraceStage, number[]>;
  errors: Record<string, number>;
}

function newRecorder(): Recorder {
  return {
    framesSent: 0,
    lateFrames: 0,
    maxFrameLatenessMs: 0,
    tickLateness: [],
    utterances: 0,
    noReply: 0,
    latency: [],
    outboundFrames: 0,
    jitter: [],
    gaps: [],
    speed: [],
    underruns: 0,
    marksEchoed: 0,
    clears: 0,
    traces: 0,
    traceSources: {},
    stages: {
      speechStoppedToFinalMs: [],
      finalToFirstAudioMs: [],
      ttsFirstAudioMs: [],
      speechStoppedToFirstAudioMs: [],
    },
    errors: {},
  };
}

type Inbound = {
  event?: unknown;
  type?: unknown;
  media?: { payload?: unknown };
  mark?: { name?: unknown };
  source?: unknown;
} & Partial<Record<TraceStage, unknown>>;

/** One simulated call. Its methods run on the shared tick and on its socket's messages. */
class Caller {
  readonly ws: WebSocket;
  readonly slot: number;
  /** Lateness counted since the window started. */
  windowLate = 0;
  closed = false;
  readonly callSid: string;
  readonly #owner: MediaCallers;
  readonly #audio: CallerAudio;
  readonly #sid: string;
  /** `","media":{...` tail of every inbound media message, with this call's streamSid. */
  readonly #mediaTail: string;
  #seq = 2;
  #chunk = 1;
  /**
   * The shared tick at which the next frame is due: its due time is epoch + tick × 5 ms, computed
   * the same way as the tick's own target, so that a tick never misses a frame due exactly then.
   */
  nextTick: number;
  #utterance = 0;
  #speech: readonly string[] | null = null;
  #speechIndex = 0;
  #speakAtMs: number;
  #awaitingReply = false;
  #replyDeadlineMs = 0;
  #speechEndMs = 0;
  #pauseMs = 0;
  // Playback of outbound audio, as Twilio would play it.
  #playbackEndMs = 0;
  readonly #markNames: string[] = [];
  readonly #markAtMs: number[] = [];
  // The reply being received: its first and last arrival, the last frame's duration, its audio.
  #inReply = false;
  #replyFirstMs = 0;
  #replyLastMs = 0;
  #replyLastFrameMs = 0;
  #replyAudioMs = 0;

  constructor(
    owner: MediaCallers,
    call: {
      ws: WebSocket;
      callSid: string;
      streamSid: string;
      slot: number;
      firstTick: number;
      speakAtMs: number;
    },
  ) {
    this.#owner = owner;
    this.ws = call.ws;
    this.callSid = call.callSid;
    this.#sid = call.streamSid;
    this.slot = call.slot;
    this.#audio = owner.audio;
    this.nextTick = call.firstTick;
    this.#speakAtMs = call.speakAtMs;
    this.#mediaTail = `"},"streamSid":"${call.streamSid}"}`;
    this.#utterance = Math.floor(Math.random() * this.#audio.utterances.length);
  }

  /** Sends every frame due by shared tick `tick`, and the mark echoes whose audio has played by `nowMs`. */
  pump(tick: number, epochMs: number, nowMs: number, rec: Recorder, lateFrameMs: number): void {
    if (this.closed) return;
    while (this.#markNames.length > 0 && this.#markAtMs[0]! <= nowMs) this.#echoMark(rec);
    while (this.nextTick <= tick) {
      const dueMs = epochMs + this.nextTick * TICK_MS;
      const lateMs = nowMs - dueMs;
      if (lateMs > lateFrameMs) {
        rec.lateFrames += 1;
        this.windowLate += 1;
      }
      if (lateMs > rec.maxFrameLatenessMs) rec.maxFrameLatenessMs = lateMs;
      this.#frame(dueMs, nowMs, rec);
      this.nextTick += SLOTS;
    }
  }

  #frame(dueMs: number, nowMs: number, rec: Recorder): void {
    if (this.#speech === null) {
      if (this.#awaitingReply && dueMs >= this.#replyDeadlineMs) {
        rec.noReply += 1;
        this.#awaitingReply = false;
        this.#speakAtMs = dueMs;
      }
      if (
        !this.#awaitingReply &&
        dueMs >= this.#speakAtMs &&
        dueMs >= this.#playbackEndMs &&
        this.#owner.speak
      ) {
        this.#endReply(rec);
        const utterances = this.#audio.utterances;
        this.#speech = utterances[this.#utterance++ % utterances.length] ?? null;
        this.#speechIndex = 0;
        rec.utterances += 1;
      }
    }
    let payload = this.#audio.silence;
    const speech = this.#speech;
    if (speech !== null) {
      payload = speech[this.#speechIndex++] ?? payload;
      if (this.#speechIndex >= speech.length) {
        this.#speech = null;
        // Audio still coming from before (a greeting talked over) is not this turn's reply.
        this.#endReply(rec);
        this.#awaitingReply = true;
        this.#speechEndMs = nowMs;
        this.#replyDeadlineMs = dueMs + this.#owner.replyTimeoutMs;
        this.#speakAtMs = Number.POSITIVE_INFINITY;
      }
    }
    const chunk = this.#chunk++;
    this.ws.send(
      `{"event":"media","sequenceNumber":"${this.#seq++}","media":{"track":"inbound","chunk":"${chunk}","timestamp":"${(chunk - 1) * FRAME_MS}","payload":"${payload}${this.#mediaTail}`,
    );
    rec.framesSent += 1;
  }

  /** Closes the reply being received: how fast its audio came. */
  #endReply(rec: Recorder): void {
    if (!this.#inReply) return;
    this.#inReply = false;
    const spanMs = this.#replyLastMs - this.#replyFirstMs + this.#replyLastFrameMs;
    if (this.#replyAudioMs >= 10 * FRAME_MS && spanMs > 0) rec.speed.push(this.#replyAudioMs / spanMs);
  }

  #echoMark(rec: Recorder): void {
    const name = this.#markNames.shift()!;
    this.#markAtMs.shift();
    this.ws.send(
      `{"event":"mark","sequenceNumber":"${this.#seq++}","streamSid":"${this.#sid}","mark":{"name":${JSON.stringify(name)}}}`,
    );
    rec.marksEchoed += 1;
  }

  onMessage(text: string, rec: Recorder): void {
    const nowMs = performance.now();
    // Most frames are media: their payload's length is all we need, so skip parsing them.
    if (text.startsWith(MEDIA_PREFIX)) {
      const start = text.indexOf(PAYLOAD_KEY);
      const end = start < 0 ? -1 : text.indexOf('"', start + PAYLOAD_KEY.length);
      if (end >= 0) return this.#media(base64Bytes(text, start + PAYLOAD_KEY.length, end) / 8, nowMs, rec);
    }
    let message: Inbound;
    try {
      message = JSON.parse(text) as Inbound;
    } catch {
      rec.errors['a frame that is not JSON'] = (rec.errors['a frame that is not JSON'] ?? 0) + 1;
      return;
    }
    switch (message.event ?? message.type) {
      case 'media': {
        const payload = message.media?.payload;
        if (typeof payload === 'string') this.#media(base64Bytes(payload, 0, payload.length) / 8, nowMs, rec);
        return;
      }
      case 'mark': {
        const name = message.mark?.name;
        if (typeof name !== 'string') return;
        this.#markNames.push(name);
        this.#markAtMs.push(Math.max(nowMs, this.#playbackEndMs));
        return;
      }
      case 'clear':
        rec.clears += 1;
        this.#playbackEndMs = nowMs;
        while (this.#markNames.length > 0) this.#echoMark(rec);
        this.#endReply(rec);
        if (this.#speech === null && !this.#awaitingReply) this.#speakAtMs = nowMs + this.#pauseMs;
        return;
      case 'switchboard.audio': {
        rec.traces += 1;
        const source = typeof message.source === 'string' ? message.source : 'none';
        rec.traceSources[source] = (rec.traceSources[source] ?? 0) + 1;
        for (const stage of TRACE_STAGES) {
          const v = message[stage];
          if (typeof v === 'number') rec.stages[stage].push(v);
        }
        return;
      }
      default:
        return;
    }
  }

  /** A media frame of `frameMs` of audio arrived at `nowMs`. */
  #media(frameMs: number, nowMs: number, rec: Recorder): void {
    rec.outboundFrames += 1;
    const startsMs = Math.max(nowMs, this.#playbackEndMs);
    if (this.#inReply) {
      const gap = nowMs - this.#replyLastMs;
      rec.gaps.push(gap);
      rec.jitter.push(Math.abs(gap - this.#replyLastFrameMs));
      if (nowMs - this.#playbackEndMs > FRAME_MS) rec.underruns += 1;
      this.#replyAudioMs += frameMs;
    } else {
      this.#inReply = true;
      this.#replyFirstMs = nowMs;
      this.#replyAudioMs = frameMs;
      if (this.#awaitingReply) {
        this.#awaitingReply = false;
        rec.latency.push(nowMs - this.#speechEndMs);
      }
      this.#pauseMs = between(this.#owner.pauseMs);
    }
    this.#replyLastMs = nowMs;
    this.#replyLastFrameMs = frameMs;
    this.#playbackEndMs = startsMs + frameMs;
    if (this.#speech === null && !this.#awaitingReply) this.#speakAtMs = this.#playbackEndMs + this.#pauseMs;
  }

  /** Twilio's `stop`, then the close. */
  hangUp(accountSid: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(
        JSON.stringify({
          event: 'stop',
          sequenceNumber: String(this.#seq++),
          stop: { accountSid, callSid: this.callSid },
          streamSid: this.#sid,
        }),
      );
      this.ws.close(1000);
    } else {
      this.ws.terminate();
    }
  }
}

/** N callers streaming in real time until `stop()`. */
export class MediaCallers {
  readonly audio: CallerAudio;
  readonly pauseMs: readonly [number, number];
  readonly replyTimeoutMs: number;
  readonly speak: boolean;
  /** Resolves once every caller has connected or failed to. */
  readonly connected: Promise<void>;
  readonly #options: MediaCallersOptions;
  readonly #lateFrameMs: number;
  readonly #slots: Caller[][] = Array.from({ length: SLOTS }, () => []);
  readonly #epochMs = performance.now();
  #tick = 0;
  #timer: NodeJS.Timeout | null = null;
  #rec: Recorder = newRecorder();
  #windowStartMs = performance.now();
  #stopped = false;
  #nextSlot = 0;
  readonly #accountSid = `AC${'0'.repeat(32)}`;

  constructor(options: MediaCallersOptions) {
    this.#options = options;
    this.audio = options.audio;
    this.pauseMs = options.pauseMs;
    this.replyTimeoutMs = options.replyTimeoutMs;
    this.speak = options.speak ?? true;
    this.#lateFrameMs = options.lateFrameMs ?? 10;
    const attempts: Promise<void>[] = [];
    for (let i = 0; i < options.callers; i++) {
      const delayMs = options.callers <= 1 ? 0 : (options.rampMs * i) / options.callers;
      const every = options.traceEvery ?? 1;
      const trace = every > 0 && i % every === 0;
      attempts.push(new Promise((resolve) => setTimeout(resolve, delayMs)).then(() => this.#connect(trace)));
    }
    this.connected = Promise.all(attempts).then(() => undefined);
    this.#schedule();
  }

  /** Callers with an open stream. */
  get live(): number {
    let n = 0;
    for (const slot of this.#slots) for (const c of slot) if (!c.closed) n += 1;
    return n;
  }

  /** Starts a new measurement window. */
  reset(): void {
    this.#rec = newRecorder();
    this.#windowStartMs = performance.now();
    for (const slot of this.#slots) for (const c of slot) c.windowLate = 0;
  }

  /** What was recorded since the last reset; a new window starts. */
  snapshot(): CallersWindow {
    const r = this.#rec;
    let callersWithLateFrames = 0;
    for (const slot of this.#slots) for (const c of slot) if (c.windowLate > 0) callersWithLateFrames += 1;
    const window: CallersWindow = {
      durationMs: performance.now() - this.#windowStartMs,
      callers: this.#options.callers,
      live: this.live,
      framesSent: r.framesSent,
      lateFrames: r.lateFrames,
      callersWithLateFrames,
      maxFrameLatenessMs: r.maxFrameLatenessMs,
      tickLatenessMs: summarize(r.tickLateness),
      utterances: r.utterances,
      noReply: r.noReply,
      speechEndToFirstAudioMs: summarize(r.latency),
      outboundFrames: r.outboundFrames,
      outboundJitterMs: summarize(r.jitter),
      outboundGapMs: summarize(r.gaps),
      replySpeed: summarize(r.speed),
      underruns: r.underruns,
      marksEchoed: r.marksEchoed,
      clears: r.clears,
      traces: r.traces,
      traceSources: { ...r.traceSources },
      stages: {
        speechStoppedToFinalMs: summarize(r.stages.speechStoppedToFinalMs),
        finalToFirstAudioMs: summarize(r.stages.finalToFirstAudioMs),
        ttsFirstAudioMs: summarize(r.stages.ttsFirstAudioMs),
        speechStoppedToFirstAudioMs: summarize(r.stages.speechStoppedToFirstAudioMs),
      },
      errors: { ...r.errors },
    };
    this.reset();
    return window;
  }

  /** Hangs every caller up (Twilio's `stop`, then close) and stops the timer. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.connected;
    if (this.#timer !== null) clearTimeout(this.#timer);
    const closing: Promise<void>[] = [];
    for (const slot of this.#slots)
      for (const c of slot) {
        if (c.ws.readyState !== WebSocket.CLOSED)
          closing.push(new Promise((resolve) => c.ws.once('close', () => resolve())));
        c.hangUp(this.#accountSid);
      }
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, 5000).unref());
    await Promise.race([Promise.all(closing), timeout]);
    for (const slot of this.#slots) for (const c of slot) c.ws.terminate();
  }

  #error(key: string): void {
    this.#rec.errors[key] = (this.#rec.errors[key] ?? 0) + 1;
  }

  /** The next tick, at epoch + tick × 5 ms whatever the previous one's lateness (no drift). */
  #schedule(): void {
    if (this.#stopped) return;
    const targetMs = this.#epochMs + this.#tick * TICK_MS;
    this.#timer = setTimeout(() => this.#onTick(targetMs), Math.max(0, targetMs - performance.now()));
  }

  #onTick(targetMs: number): void {
    const nowMs = performance.now();
    const rec = this.#rec;
    rec.tickLateness.push(Math.max(0, nowMs - targetMs));
    // By tick index, not time: a timer may fire a fraction of a millisecond early.
    const tick = this.#tick;
    const callers = this.#slots[tick % SLOTS]!;
    for (let i = 0; i < callers.length; i++)
      callers[i]!.pump(tick, this.#epochMs, nowMs, rec, this.#lateFrameMs);
    this.#tick += 1;
    this.#schedule();
  }

  async #connect(trace: boolean): Promise<void> {
    if (this.#stopped) return;
    const { url, to } = this.#options;
    const callSid = `CA${randomBytes(16).toString('hex')}`;
    const streamSid = `MZ${randomBytes(16).toString('hex')}`;
    const from = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`;
    const voiceUrl = new URL('/twilio/voice', url);
    let stream: ReturnType<typeof parseStreamTwiml>;
    try {
      const response = await fetch(voiceUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          AccountSid: this.#accountSid,
          ApiVersion: '2010-04-01',
          CallSid: callSid,
          CallStatus: 'ringing',
          Direction: 'inbound',
          From: from,
          To: to,
        }),
      });
      const twiml = await response.text();
      if (!response.ok) return this.#error(`webhook HTTP ${response.status}`);
      stream = parseStreamTwiml(twiml);
      if (stream === null) return this.#error('no <Stream> in the TwiML');
    } catch (err) {
      return this.#error(`webhook: ${label(err)}`);
    }
    // Twilio only connects to wss; on a plain-http bench server the same host speaks ws.
    const streamUrl = new URL(stream.url, voiceUrl);
    if (voiceUrl.protocol === 'http:' && streamUrl.protocol === 'wss:') streamUrl.protocol = 'ws:';
    const ws = new WebSocket(streamUrl, {
      perMessageDeflate: false,
      // What the server sends is parsed anyway; validating it first would only load the generator.
      skipUTF8Validation: true,
      headers: trace ? { [TRACE_HEADER]: '1' } : {},
    });
    const opened = await new Promise<boolean>((resolve) => {
      let settled = false;
      const fail = (key: string) => {
        if (settled) return;
        settled = true;
        this.#error(key);
        resolve(false);
      };
      // Kept for the socket's life: after the handshake, a lost stream shows as an early close.
      ws.on('error', (err) => fail(`websocket: ${label(err)}`));
      ws.once('unexpected-response', (_req, res) => {
        fail(`upgrade refused: HTTP ${res.statusCode}`);
        ws.terminate();
      });
      ws.once('open', () => {
        settled = true;
        resolve(true);
      });
    });
    if (!opened) return;
    if (this.#stopped) {
      ws.close(1000);
      return;
    }
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    ws.send(
      JSON.stringify({
        event: 'start',
        sequenceNumber: '1',
        start: {
          accountSid: this.#accountSid,
          streamSid,
          callSid,
          tracks: ['inbound'],
          customParameters: stream.parameters,
          mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        },
        streamSid,
      }),
    );
    // The first frame goes out at this caller's slot of the next 20 ms period after now.
    const slot = this.#nextSlot++ % SLOTS;
    const nowMs = performance.now();
    const periods = Math.max(0, Math.ceil((nowMs - this.#epochMs - slot * TICK_MS) / FRAME_MS));
    const firstTick = periods * SLOTS + slot;
    const firstDueMs = this.#epochMs + firstTick * TICK_MS;
    const caller = new Caller(this, {
      ws,
      callSid,
      streamSid,
      slot,
      firstTick,
      speakAtMs: firstDueMs + between(this.#options.firstSpeechMs),
    });
    ws.on('message', (data) => caller.onMessage((data as Buffer).toString(), this.#rec));
    ws.on('close', () => {
      if (!caller.closed) {
        caller.closed = true;
        this.#error('the server closed the stream');
      }
    });
    this.#slots[slot]!.push(caller);
  }
}
