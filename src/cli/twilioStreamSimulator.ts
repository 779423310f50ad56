/**
 * One call's Twilio Media Streams side, without sockets or timers, so that the test client and a
 * load generator (many calls on one timer) share it: Twilio's exact frames (research/protocols.md
 * §1.2, numeric-looking fields as strings), the caller's audio paced on the stream's own 20 ms
 * clock, and the playback clock behind marks and `clear` (§1.4): the engine's audio "plays" in
 * real time from its arrival, queued back to back; a mark is echoed once the audio before it has
 * played; `clear` drops what has not played and echoes every pending mark at once.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { MULAW_FRAME_BYTES } from '../audio/framer.ts';
import { MULAW_SILENCE, decodeMulaw } from '../audio/mulaw.ts';

/** Twilio's audio: 8 kHz μ-law, one byte per sample (§1.5). */
export const MULAW_RATE_HZ = 8_000;
/** One media frame: 160 bytes = 20 ms. */
export const FRAME_MS = 20;
const BYTES_PER_MS = MULAW_RATE_HZ / 1000;
const SILENCE_PAYLOAD = Buffer.alloc(MULAW_FRAME_BYTES, MULAW_SILENCE).toString('base64');

/** One thing the caller says, ready to stream: 8 kHz μ-law cut into whole 20 ms frames. */
export interface Utterance {
  readonly kind: 'wav' | 'say' | 'audio';
  /** File name, spoken text, or a label the caller chose. */
  readonly label: string;
  /** μ-law bytes, a whole number of frames (the last padded with silence). */
  readonly mulaw: Buffer;
  readonly durationMs: number;
  /**
   * First and last frame whose energy passes the voice threshold (`prepareUtterance`, mediaCall.ts); the
   * caller's speech starts when the first is sent and ends when the last is. Null for silence.
   */
  readonly voiced: { readonly firstFrame: number; readonly lastFrame: number } | null;
}

// ---------------------------------------------------------------------------------------------------
// Twilio's frames (§1.2). Numeric-looking fields are strings, as Twilio sends them.

export interface StreamIdentity {
  readonly streamSid: string;
  readonly callSid: string;
  readonly accountSid: string;
  /** The TwiML's `<Parameter>`s. */
  readonly customParameters: Readonly<Record<string, string>>;
}

/** The first message: no streamSid, no sequenceNumber. */
export function connectedFrame(): string {
  return '{"event":"connected","protocol":"Call","version":"1.0.0"}';
}

export function startFrame(sequenceNumber: number, id: StreamIdentity): string {
  return JSON.stringify({
    event: 'start',
    sequenceNumber: String(sequenceNumber),
    start: {
      accountSid: id.accountSid,
      streamSid: id.streamSid,
      callSid: id.callSid,
      tracks: ['inbound'],
      customParameters: id.customParameters,
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: MULAW_RATE_HZ, channels: 1 },
    },
    streamSid: id.streamSid,
  });
}

/** A media frame. Sids are Twilio ids (letters and hex) and base64 needs no escaping: a template. */
export function mediaFrame(
  sequenceNumber: number,
  chunk: number,
  timestampMs: number,
  payloadBase64: string,
  streamSid: string,
): string {
  return `{"event":"media","sequenceNumber":"${sequenceNumber}","media":{"track":"inbound","chunk":"${chunk}","timestamp":"${timestampMs}","payload":"${payloadBase64}"},"streamSid":"${streamSid}"}`;
}

export function dtmfFrame(sequenceNumber: number, digit: string, streamSid: string): string {
  return JSON.stringify({
    event: 'dtmf',
    streamSid,
    sequenceNumber: String(sequenceNumber),
    dtmf: { track: 'inbound_track', digit },
  });
}

/** Twilio's echo of a mark the server sent, once the audio before it has played (§1.4). */
export function markFrame(sequenceNumber: number, name: string, streamSid: string): string {
  return JSON.stringify({ event: 'mark', sequenceNumber: String(sequenceNumber), streamSid, mark: { name } });
}

export function stopFrame(sequenceNumber: number, id: StreamIdentity): string {
  return JSON.stringify({
    event: 'stop',
    sequenceNumber: String(sequenceNumber),
    stop: { accountSid: id.accountSid, callSid: id.callSid },
    streamSid: id.streamSid,
  });
}

export function newCallSid(): string {
  return `CA${randomBytes(16).toString('hex')}`;
}

export function newStreamSid(): string {
  return `MZ${randomBytes(16).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------------
// One call's Twilio side

/** Progress of one queued utterance, filled in as its frames go out (times on the `now` clock). */
export interface UtteranceProgress {
  readonly utterance: Utterance;
  firstFrameAtMs: number | null;
  speechStartAtMs: number | null;
  speechEndAtMs: number | null;
  /** When its last frame went out. */
  doneAtMs: number | null;
}

/** What one frame from the engine was, after the simulator has acted on it. */
export type InboundFrame =
  | { readonly kind: 'media'; readonly bytes: number }
  | { readonly kind: 'mark'; readonly name: string }
  | { readonly kind: 'clear'; readonly droppedMs: number; readonly marksFlushed: number }
  | { readonly kind: 'trace'; readonly event: string; readonly frame: Record<string, unknown> }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface TwilioStreamSimulatorOptions {
  readonly callSid: string;
  readonly accountSid: string;
  readonly customParameters?: Readonly<Record<string, string>>;
  /** Default: a fresh MZ… sid. */
  readonly streamSid?: string;
  /**
   * Sends one text frame to the engine; false when it could not go out (the socket is closing), so
   * that `framesSent` counts only what was sent.
   */
  readonly send: (frame: string) => boolean;
  /** Keep the engine's audio so `playedAudio()` can render what the caller heard. Default false. */
  readonly keepPlayedAudio?: boolean;
}

export interface SimulatorStats {
  /** Media frames sent (the caller's audio and silence); none once the socket is closing. */
  framesSent: number;
  mediaFramesReceived: number;
  /** μ-law bytes of engine audio received (8 per ms). */
  bytesReceived: number;
  marksReceived: number;
  marksEchoed: number;
  clears: number;
}

export interface TwilioStreamSimulator {
  readonly identity: StreamIdentity;
  readonly stats: Readonly<SimulatorStats>;
  /** When `open` was called, on the caller's clock; frame k covers [startedAtMs + 20k, +20). */
  readonly startedAtMs: number;
  /** When the audio received so far will have finished playing. */
  readonly playEndAtMs: number;
  /** When the last engine audio arrived (-Infinity before any). */
  readonly lastAudioAtMs: number;
  /** Sends `connected` and `start`; the stream's clock starts now. */
  open(nowMs: number): void;
  /**
   * Sends every frame due by `nowMs` (the caller's queued audio, else silence) and echoes the marks
   * whose audio has played. Calls may come late or early: frames follow the stream's own schedule.
   */
  tick(nowMs: number): void;
  /** When the next frame is due. */
  nextFrameAtMs(): number;
  /** Queues an utterance after any already queued. */
  speak(utterance: Utterance): UtteranceProgress;
  dtmf(digit: string): void;
  /** Applies one frame from the engine (media, mark, clear, trace) at `nowMs`. */
  receive(data: string, nowMs: number): InboundFrame;
  /** Sends `stop`; queued engine audio that has not played by `nowMs` is never heard. */
  stop(nowMs: number): void;
  /** The engine audio as the caller heard it, 8 kHz PCM16 from the stream's start (needs keepPlayedAudio). */
  playedAudio(): Int16Array;
}

interface PlayedSegment {
  readonly startMs: number;
  bytes: Buffer;
}

function base64Length(payload: string): number {
  const n = payload.length;
  let pad = 0;
  if (n > 0 && payload.charCodeAt(n - 1) === 61) pad++;
  if (n > 1 && payload.charCodeAt(n - 2) === 61) pad++;
  return ((n * 3) >> 2) - pad;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export function createTwilioStreamSimulator(options: TwilioStreamSimulatorOptions): TwilioStreamSimulator {
  const identity: StreamIdentity = {
    streamSid: options.streamSid ?? newStreamSid(),
    callSid: options.callSid,
    accountSid: options.accountSid,
    customParameters: options.customParameters ?? {},
  };
  const sid = identity.streamSid;
  const send = options.send;
  const keep = options.keepPlayedAudio ?? false;
  const stats: SimulatorStats = {
    framesSent: 0,
    mediaFramesReceived: 0,
    bytesReceived: 0,
    marksReceived: 0,
    marksEchoed: 0,
    clears: 0,
  };
  let sequence = 0;
  let startedAt = 0;
  let opened = false;
  let stopped = false;
  /** Index of the next media frame (its chunk is frame + 1). */
  let frame = 0;
  const queue: UtteranceProgress[] = [];
  /** Frames of queue[0] already sent. */
  let queuedFrame = 0;
  let playEnd = 0;
  let lastAudioAt = -Infinity;
  const marks: Array<{ name: string; dueAtMs: number }> = [];
  const played: PlayedSegment[] = [];

  const echo = (name: string) => {
    if (send(markFrame(++sequence, name, sid))) stats.marksEchoed++;
  };

  /** Forgets engine audio that has not played by `nowMs` (clear, or the call ending). */
  const truncate = (nowMs: number): number => {
    const dropped = Math.max(0, playEnd - nowMs);
    playEnd = Math.min(playEnd, nowMs);
    if (keep) {
      const at = nowMs - startedAt;
      while (played.length > 0 && played[played.length - 1]!.startMs >= at) played.pop();
      const last = played[played.length - 1];
      if (last !== undefined) {
        const heard = Math.round((at - last.startMs) * BYTES_PER_MS);
        if (heard < last.bytes.length) last.bytes = last.bytes.subarray(0, heard);
      }
    }
    return dropped;
  };

  const sendFrame = (nowMs: number) => {
    let payload = SILENCE_PAYLOAD;
    const current = queue[0];
    if (current !== undefined) {
      const { utterance } = current;
      const f = queuedFrame++;
      payload = utterance.mulaw.toString('base64', f * MULAW_FRAME_BYTES, (f + 1) * MULAW_FRAME_BYTES);
      if (f === 0) current.firstFrameAtMs = nowMs;
      if (f === (utterance.voiced?.firstFrame ?? 0)) current.speechStartAtMs = nowMs;
      const last = utterance.mulaw.length / MULAW_FRAME_BYTES - 1;
      if (f === (utterance.voiced?.lastFrame ?? last)) current.speechEndAtMs = nowMs;
      if (f === last) {
        current.doneAtMs = nowMs;
        queue.shift();
        queuedFrame = 0;
      }
    }
    const sent = send(mediaFrame(++sequence, frame + 1, frame * FRAME_MS, payload, sid));
    frame++;
    if (sent) stats.framesSent++;
  };

  const parseInbound = (data: string, nowMs: number): InboundFrame => {
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return { kind: 'invalid', reason: 'not JSON' };
    }
    if (!isRecord(message) || typeof message['event'] !== 'string')
      return { kind: 'invalid', reason: 'no event field' };
    const event = message['event'];
    if (event.startsWith('switchboard.')) return { kind: 'trace', event, frame: message };
    if (event !== 'media' && event !== 'mark' && event !== 'clear')
      return { kind: 'invalid', reason: `unknown event "${event.slice(0, 40)}" (Twilio error 31924)` };
    if (message['streamSid'] !== sid)
      return { kind: 'invalid', reason: `${event} for another streamSid (Twilio error 31951)` };
    if (event === 'media') {
      const media = message['media'];
      const payload = isRecord(media) ? media['payload'] : undefined;
      if (typeof payload !== 'string' || payload.length % 4 !== 0 || !BASE64.test(payload))
        return { kind: 'invalid', reason: 'media without a base64 payload' };
      if (isRecord(media) && Object.keys(media).length !== 1)
        return { kind: 'invalid', reason: 'outbound media may hold only payload (Twilio error 31951)' };
      const bytes = base64Length(payload);
      const start = Math.max(nowMs, playEnd);
      playEnd = start + bytes / BYTES_PER_MS;
      lastAudioAt = nowMs;
      stats.mediaFramesReceived++;
      stats.bytesReceived += bytes;
      if (keep && bytes > 0)
        played.push({ startMs: start - startedAt, bytes: Buffer.from(payload, 'base64') });
      return { kind: 'media', bytes };
    }
    if (event === 'mark') {
      const mark = message['mark'];
      const name = isRecord(mark) ? mark['name'] : undefined;
      if (typeof name !== 'string') return { kind: 'invalid', reason: 'mark without a name' };
      stats.marksReceived++;
      // Echoed once the audio queued before it has played: at once when nothing is playing.
      if (playEnd <= nowMs && marks.length === 0) echo(name);
      else marks.push({ name, dueAtMs: playEnd });
      return { kind: 'mark', name };
    }
    // clear: drop the unplayed audio and send back every pending mark at once (§1.4).
    stats.clears++;
    const droppedMs = truncate(nowMs);
    const flushed = marks.length;
    for (const m of marks.splice(0)) echo(m.name);
    return { kind: 'clear', droppedMs, marksFlushed: flushed };
  };

  return {
    identity,
    stats,
    get startedAtMs() {
      return startedAt;
    },
    get playEndAtMs() {
      return playEnd;
    },
    get lastAudioAtMs() {
      return lastAudioAt;
    },
    open(nowMs) {
      if (opened) throw new Error('the stream is already open');
      opened = true;
      startedAt = nowMs;
      playEnd = nowMs;
      send(connectedFrame());
      send(startFrame(++sequence, identity));
    },
    tick(nowMs) {
      if (!opened || stopped) return;
      while (startedAt + (frame + 1) * FRAME_MS <= nowMs) sendFrame(nowMs);
      while (marks.length > 0 && marks[0]!.dueAtMs <= nowMs) echo(marks.shift()!.name);
    },
    nextFrameAtMs() {
      return startedAt + (frame + 1) * FRAME_MS;
    },
    speak(utterance) {
      const progress: UtteranceProgress = {
        utterance,
        firstFrameAtMs: null,
        speechStartAtMs: null,
        speechEndAtMs: null,
        doneAtMs: null,
      };
      queue.push(progress);
      return progress;
    },
    dtmf(digit) {
      if (!opened || stopped) return;
      send(dtmfFrame(++sequence, digit, sid));
    },
    receive(data, nowMs) {
      if (!opened) return { kind: 'invalid', reason: 'a frame before the stream started' };
      return parseInbound(data, nowMs);
    },
    stop(nowMs) {
      if (!opened || stopped) return;
      stopped = true;
      truncate(nowMs);
      send(stopFrame(++sequence, identity));
    },
    playedAudio() {
      const last = played[played.length - 1];
      const total = last === undefined ? 0 : Math.round(last.startMs * BYTES_PER_MS) + last.bytes.length;
      const out = new Int16Array(total);
      for (const segment of played) {
        const at = Math.round(segment.startMs * BYTES_PER_MS);
        decodeMulaw(segment.bytes, out.subarray(at, at + segment.bytes.length));
      }
      return out;
    },
  };
}
