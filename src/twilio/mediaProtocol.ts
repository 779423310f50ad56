/**
 * Twilio Media Streams WebSocket messages (key `event`), bidirectional `<Connect><Stream>`
 * (research/protocols.md §1.2–1.3). Every inbound frame is validated; anything else is an invalid
 * frame with a reason that never quotes it (frames carry caller audio, digits and parameters).
 *
 * `media` frames are the hot path: about 50 a second per call, hundreds of calls per process. The
 * zod schema costs about 1–1.7 µs per media frame on the development machine (as much as JSON.parse
 * itself), so media frames are checked by `isMediaFrame`, a hand-written check that accepts exactly
 * what `mediaFrameSchema` accepts (test/twilio/mediaProtocol.test.ts compares the two over many
 * generated frames) at a fraction of the cost. zod keeps the rest, and explains a rejected media
 * frame. Before either, a frame in the documented layout is read by `scanMediaFrame` without JSON.parse,
 * and its payload checked while `PayloadDecoder` decodes it: less than half the cost of the full
 * parse, decode included (`node src/audio/audioBench.ts`, the two "media message" rows).
 *
 * Numeric-looking fields (`sequenceNumber`, `chunk`, `timestamp`) arrive as JSON strings; they are
 * accepted as digit strings and left as strings (nothing on the per-frame path needs them as numbers).
 */
import { z } from 'zod';
import { base64ByteLength } from '../base64.ts';

/**
 * The server's `maxPayload` for Media Streams sockets. Twilio's largest message is `start`, whose
 * size is its `<Parameter>`s (we send two short ones); an inbound `media` frame is about 400 bytes
 * (216 base64 characters of audio plus the envelope). 32 KiB leaves room for parameters and for
 * media frames up to MAX_MEDIA_PAYLOAD_CHARS while bounding what a peer can make us buffer and parse
 * per message: ws holds a whole message in memory before emitting it.
 */
export const MAX_MEDIA_FRAME_BYTES = 32 * 1024;

/**
 * Longest accepted `media.payload`: 16 KiB of base64 = 12 KiB of μ-law = 1.5 s of audio. Twilio
 * sends 216 characters (20 ms); anything near this bound is not a phone stream.
 */
export const MAX_MEDIA_PAYLOAD_CHARS = 16 * 1024;

/** Longest accepted `streamSid` / `callSid` / `accountSid` (Twilio's are 34 characters). */
const MAX_SID_CHARS = 64;

/** Digits only, at most 16 (a sequence number at 50/s needs 10 digits to run for six years). */
const DIGITS = /^[0-9]{1,16}$/;
/** Standard base64, padded or not (no whitespace, no URL-safe alphabet). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

const digits = z.string().regex(DIGITS);
const sid = z.string().min(1).max(MAX_SID_CHARS);
const track = z.enum(['inbound', 'outbound']);

const connectedFrameSchema = z.looseObject({
  event: z.literal('connected'),
  protocol: z.string().max(64),
  version: z.string().max(64),
});

const startFrameSchema = z.looseObject({
  event: z.literal('start'),
  sequenceNumber: digits,
  streamSid: sid,
  start: z.looseObject({
    accountSid: sid,
    callSid: sid,
    streamSid: sid,
    tracks: z.array(track).max(2),
    // From <Parameter>; absent when the TwiML set none (the connection then refuses the stream).
    customParameters: z.record(z.string().max(256), z.string().max(4096)).optional(),
    mediaFormat: z.looseObject({
      encoding: z.string().max(64),
      sampleRate: z.number(),
      channels: z.number(),
    }),
  }),
});

/** Exported for the equivalence test with `isMediaFrame`; parse frames with `parseMediaFrame`. */
export const mediaFrameSchema = z.looseObject({
  event: z.literal('media'),
  sequenceNumber: digits,
  streamSid: sid,
  media: z.looseObject({
    track,
    chunk: digits,
    timestamp: digits,
    payload: z.string().min(1).max(MAX_MEDIA_PAYLOAD_CHARS).regex(BASE64),
  }),
});

const dtmfFrameSchema = z.looseObject({
  event: z.literal('dtmf'),
  sequenceNumber: digits,
  streamSid: sid,
  dtmf: z.looseObject({ track: z.string().max(64), digit: z.string().regex(/^[0-9*#A-D]$/) }),
});

const markFrameSchema = z.looseObject({
  event: z.literal('mark'),
  sequenceNumber: digits,
  streamSid: sid,
  mark: z.looseObject({ name: z.string().max(256) }),
});

const stopFrameSchema = z.looseObject({
  event: z.literal('stop'),
  sequenceNumber: digits,
  streamSid: sid,
  stop: z.looseObject({ accountSid: sid, callSid: sid }),
});

export const mediaInboundSchema = z.discriminatedUnion('event', [
  connectedFrameSchema,
  startFrameSchema,
  mediaFrameSchema,
  dtmfFrameSchema,
  markFrameSchema,
  stopFrameSchema,
]);

export type MediaInbound = z.infer<typeof mediaInboundSchema>;
export type StartFrame = z.infer<typeof startFrameSchema>;
export type MediaFrame = z.infer<typeof mediaFrameSchema>;

const KNOWN_EVENTS = new Set(['connected', 'start', 'media', 'dtmf', 'mark', 'stop']);

export type MediaParse =
  | { readonly ok: true; readonly frame: MediaInbound }
  | {
      readonly ok: false;
      readonly reason: string;
      /**
       * A JSON object whose `event` is a string Twilio's documented protocol does not have: well
       * formed, just unknown (a future addition), as opposed to malformed.
       */
      readonly unknownEvent: boolean;
    };

/** Parses one text frame; never throws, and the reason never quotes the frame. */
export function parseMediaFrame(text: string): MediaParse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON', unknownEvent: false };
  }
  if (isMediaFrame(json)) return { ok: true, frame: json };
  const parsed = mediaInboundSchema.safeParse(json);
  if (parsed.success) return { ok: true, frame: parsed.data };
  const event = isRecord(json) ? json.event : undefined;
  const unknownEvent = typeof event === 'string' && !KNOWN_EVENTS.has(event);
  if (unknownEvent) return { ok: false, reason: 'unknown event', unknownEvent };
  const issue = parsed.error.issues[0];
  return {
    ok: false,
    reason: `${issue?.path.join('.') || 'event'}: ${issue?.message ?? 'invalid'}`,
    unknownEvent,
  };
}

/**
 * Whether a parsed JSON value is a valid `media` frame: exactly `mediaFrameSchema.safeParse(value)
 * .success`, without zod's per-call overhead.
 */
export function isMediaFrame(value: unknown): value is MediaFrame {
  if (!isRecord(value) || value.event !== 'media') return false;
  const media = value.media;
  if (!isRecord(media)) return false;
  const streamSid = value.streamSid;
  const payload = media.payload;
  return (
    isDigits(value.sequenceNumber) &&
    typeof streamSid === 'string' &&
    streamSid.length >= 1 &&
    streamSid.length <= MAX_SID_CHARS &&
    (media.track === 'inbound' || media.track === 'outbound') &&
    isDigits(media.chunk) &&
    isDigits(media.timestamp) &&
    typeof payload === 'string' &&
    payload.length >= 1 &&
    payload.length <= MAX_MEDIA_PAYLOAD_CHARS &&
    isBase64(payload)
  );
}

// The documented layout of a media frame: compact JSON, keys in the order of Twilio's documentation
// (research/protocols.md §1.2), which is what the test client and the bench send. A published log of
// a live Twilio Media Stream shows Twilio's own frames in exactly this layout (the test "frames byte
// for byte as a live Twilio stream sends them" keeps one); any that are not (spacing, another order)
// take the full parse, only slower.
const MEDIA_HEAD = '{"event":"media","sequenceNumber":"';
const AFTER_SEQUENCE = '","media":{"track":"';
const AFTER_TRACK = '","chunk":"';
const INBOUND = `inbound${AFTER_TRACK}`;
const OUTBOUND = `outbound${AFTER_TRACK}`;
const AFTER_CHUNK = '","timestamp":"';
const AFTER_TIMESTAMP = '","payload":"';
const AFTER_PAYLOAD = '"},"streamSid":"';

/**
 * Reads a `media` frame in the documented layout (compact, keys in the documented order)
 * without JSON.parse; `undefined` for any other text, which then takes
 * `parseMediaFrame`. What it returns is what JSON.parse gives for the text, with every field checked
 * as `mediaFrameSchema` checks it except the payload's alphabet: `PayloadDecoder.decode` checks that
 * while decoding (a payload with a quote, a backslash or a control character is never base64, so
 * it never decodes). test/twilio/mediaProtocol.test.ts checks both claims over generated frames.
 */
export function scanMediaFrame(text: string): MediaFrame | undefined {
  if (!textAt(text, 0, MEDIA_HEAD)) return undefined;
  let i = MEDIA_HEAD.length;
  let end = digitsEnd(text, i);
  if (end < 0 || !textAt(text, end, AFTER_SEQUENCE)) return undefined;
  const sequenceNumber = text.slice(i, end);
  i = end + AFTER_SEQUENCE.length;
  let track: 'inbound' | 'outbound';
  if (textAt(text, i, INBOUND)) track = 'inbound';
  else if (textAt(text, i, OUTBOUND)) track = 'outbound';
  else return undefined;
  i += track.length + AFTER_TRACK.length;
  end = digitsEnd(text, i);
  if (end < 0 || !textAt(text, end, AFTER_CHUNK)) return undefined;
  const chunk = text.slice(i, end);
  i = end + AFTER_CHUNK.length;
  end = digitsEnd(text, i);
  if (end < 0 || !textAt(text, end, AFTER_TIMESTAMP)) return undefined;
  const timestamp = text.slice(i, end);
  i = end + AFTER_TIMESTAMP.length;
  end = text.indexOf('"', i);
  if (end <= i || end - i > MAX_MEDIA_PAYLOAD_CHARS || !textAt(text, end, AFTER_PAYLOAD)) return undefined;
  const payload = text.slice(i, end);
  i = end + AFTER_PAYLOAD.length;
  // The sid ends the frame: `"}` and nothing after.
  end = text.length - 2;
  if (end <= i || end - i > MAX_SID_CHARS || text.charCodeAt(end) !== 34 || text.charCodeAt(end + 1) !== 125)
    return undefined;
  for (let j = i; j < end; j++) {
    const c = text.charCodeAt(j);
    // A quote, an escape or a control character: the JSON string is not these characters.
    if (c === 34 || c === 92 || c < 32) return undefined;
  }
  const streamSid = text.slice(i, end);
  return { event: 'media', sequenceNumber, media: { track, chunk, timestamp, payload }, streamSid };
}

/** Whether `text` holds `literal` at `i` (a slice compared whole: a fraction of startsWith's cost in V8). */
function textAt(text: string, i: number, literal: string): boolean {
  return text.slice(i, i + literal.length) === literal;
}

/** The index of the quote that closes 1–16 digits starting at `i`, or -1. */
function digitsEnd(text: string, i: number): number {
  const limit = Math.min(text.length, i + 17);
  for (let j = i; j < limit; j++) {
    const c = text.charCodeAt(j);
    if (c === 34) return j > i ? j : -1;
    if (c < 48 || c > 57) return -1;
  }
  return -1;
}

/**
 * Decodes media payloads into one reused buffer. Node's base64 decoder skips what is not base64
 * rather than refusing it, so a payload is accepted when its bytes encode back to it (any base64 a
 * sender's encoder wrote) or, failing that, when it is in `BASE64`'s language all the same (unpadded,
 * or stray bits in its last character): exactly the payloads `mediaFrameSchema` accepts.
 */
export class PayloadDecoder {
  // Two Twilio frames to start with; it grows to the largest payload seen.
  #buffer = Buffer.allocUnsafeSlow(320);
  #view = this.#buffer.subarray(0, 0);

  /** The payload's bytes, valid until the next call; `undefined` when the payload is not base64. */
  decode(payload: string): Buffer | undefined {
    const bytes = base64ByteLength(payload);
    if (bytes > this.#buffer.length) {
      this.#buffer = Buffer.allocUnsafeSlow(bytes);
      this.#view = this.#buffer.subarray(0, 0);
    }
    const written = this.#buffer.write(payload, 'base64');
    if (written !== this.#view.length) this.#view = this.#buffer.subarray(0, written);
    if (this.#view.toString('base64') === payload || isBase64(payload)) return this.#view;
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDigits(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  const n = value.length;
  if (n < 1 || n > 16) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** 1 for the 64 characters of the standard base64 alphabet, by char code. */
const BASE64_ALPHABET = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')
  BASE64_ALPHABET[c.charCodeAt(0)] = 1;

/** The BASE64 pattern as a loop: alphabet characters, then up to two `=` where a group allows them. */
function isBase64(s: string): boolean {
  const n = s.length;
  let padding = 0;
  if (n > 0 && s.charCodeAt(n - 1) === 61) padding = n > 1 && s.charCodeAt(n - 2) === 61 ? 2 : 1;
  const body = n - padding;
  for (let i = 0; i < body; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || BASE64_ALPHABET[c] === 0) return false;
  }
  // The last group: 4 characters, 2 (+ "==") or 3 (+ "="); one lone character is never base64.
  const rest = body & 3;
  return padding === 0 ? rest !== 1 : padding === 1 ? rest === 3 : rest === 2;
}

// Outbound (§1.3). The media object holds only `payload`. Strings are built by concatenation:
// base64 needs no JSON escaping, and the sid and mark name go through JSON.stringify.

/** One outbound audio message. `payloadB64` must be base64 (what `frameToBase64` returns). */
export function mediaMessage(streamSid: string, payloadB64: string): string {
  return `{"event":"media","streamSid":${JSON.stringify(streamSid)},"media":{"payload":"${payloadB64}"}}`;
}

/** Asks Twilio to echo `name` once the audio sent before it has played (or been cleared). */
export function markMessage(streamSid: string, name: string): string {
  return `{"event":"mark","streamSid":${JSON.stringify(streamSid)},"mark":{"name":${JSON.stringify(name)}}}`;
}

/** Empties Twilio's buffer of our audio; Twilio then echoes every pending mark. */
export function clearMessage(streamSid: string): string {
  return `{"event":"clear","streamSid":${JSON.stringify(streamSid)}}`;
}
