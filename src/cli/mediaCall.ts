/**
 * The test client's audio mode: behaves as Twilio Media Streams would on a live call. It posts the
 * voice webhook, connects to the `<Connect><Stream>` URL from the TwiML, and streams the caller's
 * audio in real time as 20 ms μ-law frames, continuous silence included, while the engine's audio
 * plays on a simulated clock and marks are echoed as Twilio does (twilioStreamSimulator.ts).
 * `runMediaCall` runs a script of utterances (WAV files, espeak-ng speech) and DTMF digits on a
 * drift-free timer and reports each turn.
 *
 * Trace frames: with the `x-switchboard-trace: 1` upgrade header the engine adds its own
 * `switchboard.*` events to the stream (never sent to Twilio). Read here:
 * - `{ event: 'switchboard.turn', streamSid, trace: TurnTrace }`, what the engine heard and decided;
 * - `{ event: 'switchboard.audio', streamSid, turn, source, …Ms }` when a reply's first audio left:
 *   `source` ('cache' | 'tts' | null) and stage timings, every field ending in `Ms` (ms or null);
 * - `{ event: 'switchboard.heard', streamSid, turn, heard, interrupted }` (HeardReport);
 * any other `switchboard.*` event is kept and shown as it came.
 */
import { Buffer } from 'node:buffer';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { MULAW_FRAME_BYTES } from '../audio/framer.ts';
import { MULAW_SILENCE, encodeMulaw } from '../audio/mulaw.ts';
import { resample } from '../audio/resampleAny.ts';
import { readWav } from '../audio/wavRead.ts';
import type { HeardReport, TurnTrace } from '../calls/callTransport.ts';
import { AppError } from '../errors.ts';
import { TRACE_HEADER } from '../twilio/relayProtocol.ts';
import { twilioSignature } from '../twilio/signature.ts';
import type { Utterance, UtteranceProgress } from './twilioStreamSimulator.ts';
import {
  FRAME_MS,
  MULAW_RATE_HZ,
  createTwilioStreamSimulator,
  isRecord,
  newCallSid,
} from './twilioStreamSimulator.ts';

const BYTES_PER_MS = MULAW_RATE_HZ / 1000;
// ---------------------------------------------------------------------------------------------------
// Caller audio

/**
 * Frames below this RMS never count as speech (about −50 dBFS: room noise in a quiet recording).
 * Above it a frame is voiced when it is within 26 dB of the utterance's loudest frame, so the
 * threshold follows the recording level and trailing breaths or hiss do not extend the speech.
 */
const VOICED_MIN_RMS = 100;
const VOICED_BELOW_PEAK = 20;

/** Resamples to 8 kHz, μ-law encodes, pads to whole frames and finds where the speech is. */
export function prepareUtterance(
  kind: Utterance['kind'],
  label: string,
  samples: Int16Array,
  sampleRateHz: number,
): Utterance {
  if (samples.length === 0) throw new AppError('ERR_WAV_INVALID', `${label}: holds no audio`);
  const pcm = resample(samples, sampleRateHz, MULAW_RATE_HZ);
  const frames = Math.max(1, Math.ceil(pcm.length / MULAW_FRAME_BYTES));
  const mulaw = Buffer.alloc(frames * MULAW_FRAME_BYTES, MULAW_SILENCE);
  encodeMulaw(pcm, mulaw);
  const rms = new Float64Array(frames);
  let peak = 0;
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    const end = Math.min(pcm.length, (f + 1) * MULAW_FRAME_BYTES);
    for (let i = f * MULAW_FRAME_BYTES; i < end; i++) sum += pcm[i]! * pcm[i]!;
    rms[f] = Math.sqrt(sum / MULAW_FRAME_BYTES);
    peak = Math.max(peak, rms[f]!);
  }
  let voiced: Utterance['voiced'] = null;
  if (peak >= VOICED_MIN_RMS) {
    const threshold = Math.max(VOICED_MIN_RMS, peak / VOICED_BELOW_PEAK);
    const firstFrame = rms.findIndex((r) => r >= threshold);
    const lastFrame = rms.findLastIndex((r) => r >= threshold);
    voiced = { firstFrame, lastFrame };
  }
  return { kind, label, mulaw, durationMs: frames * FRAME_MS, voiced };
}

/** Reads a WAV file (any rate; see `readWav` for the formats) as an utterance. */
export async function loadWavUtterance(file: string): Promise<Utterance> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new AppError('ERR_WAV_UNREADABLE', `${file}: cannot read it (${reason})`, { cause: err });
  }
  try {
    const wav = readWav(bytes);
    return prepareUtterance('wav', path.basename(file), wav.samples, wav.sampleRateHz);
  } catch (err) {
    if (err instanceof AppError) throw new AppError(err.code, `${file}: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * Synthesizes `text` with espeak-ng (`espeak-ng --stdout -v en-us`, a 22.05 kHz WAV on stdout).
 *
 * @throws AppError `ERR_SAY_UNAVAILABLE` when espeak-ng is not installed.
 */
export async function synthesizeUtterance(text: string, voice = 'en-us'): Promise<Utterance> {
  const wav = await new Promise<Buffer>((resolve, reject) => {
    execFile(
      'espeak-ng',
      ['--stdout', '-v', voice, text],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err === null) return resolve(stdout);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(
            new AppError(
              'ERR_SAY_UNAVAILABLE',
              '--say needs espeak-ng on PATH to synthesize speech (apt-get install espeak-ng); ' +
                'or record the utterance and pass it with --wav FILE.wav',
            ),
          );
        }
        reject(
          new AppError(
            'ERR_SAY_FAILED',
            `espeak-ng failed: ${stderr.toString('utf8').trim() || err.message}`,
          ),
        );
      },
    );
  });
  const audio = readWav(wav);
  return prepareUtterance('say', text, audio.samples, audio.sampleRateHz);
}

// ---------------------------------------------------------------------------------------------------
// Webhook and TwiML

export interface VoiceWebhookOptions {
  /** The engine, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** PUBLIC_BASE_URL: the URL Twilio would have requested, which is what the signature covers. */
  readonly publicBaseUrl?: string | undefined;
  /** TWILIO_AUTH_TOKEN: when set, the request is signed as Twilio signs it. */
  readonly authToken?: string | undefined;
  readonly form: Readonly<Record<string, string>>;
}

/** Posts the voice webhook as Twilio does and returns the TwiML. */
export async function postVoiceWebhook(options: VoiceWebhookOptions): Promise<string> {
  const voiceUrl = new URL('/twilio/voice', options.url).href;
  const signedUrl = new URL('/twilio/voice', options.publicBaseUrl ?? options.url).href;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (options.authToken)
    headers['x-twilio-signature'] = twilioSignature(options.authToken, signedUrl, { ...options.form });
  let response: Response;
  try {
    response = await fetch(voiceUrl, {
      method: 'POST',
      headers,
      body: new URLSearchParams({ ...options.form }),
    });
  } catch (err) {
    // fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND …) is in its cause.
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const reason = typeof cause?.code === 'string' ? cause.code : String(cause?.message ?? err);
    throw new AppError(
      'ERR_ENGINE_UNREACHABLE',
      `cannot reach the engine at ${voiceUrl} (${reason}): is it running (npm start)? --url points elsewhere`,
      { cause: err },
    );
  }
  const twiml = await response.text();
  if (!response.ok) {
    // A 403 is the engine checking signatures: the client signs only with the engine's token and URL.
    const hint =
      response.status !== 403
        ? ''
        : options.authToken
          ? ` (signed for ${signedUrl}: give the client the engine's own TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL)`
          : " (the engine checks Twilio signatures: run the client with the engine's TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL so it signs)";
    throw new AppError(
      'ERR_WEBHOOK_REFUSED',
      `webhook answered HTTP ${response.status}: ${twiml.slice(0, 200)}${hint}`,
    );
  }
  return twiml;
}

export function unescapeXml(text: string): string {
  return text
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&apos;', "'")
    .replaceAll('&amp;', '&');
}

function attribute(tag: string, name: string): string | null {
  const value = new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1];
  return value === undefined ? null : unescapeXml(value);
}

export interface StreamTwiml {
  readonly streamUrl: string;
  readonly actionUrl: string | null;
  readonly parameters: Record<string, string>;
}

/**
 * The `<Connect><Stream>` of a TwiML answer.
 *
 * @throws AppError `ERR_NOT_MEDIA_STREAMS` when the engine answered with ConversationRelay, and
 * `ERR_TWIML_UNEXPECTED` for anything else without a stream (a number not in service, say).
 */
export function parseStreamTwiml(twiml: string): StreamTwiml {
  const stream = /<Stream\b[^>]*>/.exec(twiml)?.[0];
  const url = stream === undefined ? null : attribute(stream, 'url');
  if (url === null) {
    if (/<ConversationRelay\b/.test(twiml)) {
      throw new AppError(
        'ERR_NOT_MEDIA_STREAMS',
        'the engine answered with ConversationRelay, not Media Streams: it is not configured for our own ' +
          'speech path (set STT_PROVIDER and TTS_PROVIDER on the server), or drop --media to test the relay',
      );
    }
    throw new AppError(
      'ERR_TWIML_UNEXPECTED',
      `the webhook did not connect a stream: ${twiml.slice(0, 300)}`,
    );
  }
  const connect = /<Connect\b[^>]*>/.exec(twiml)?.[0];
  const parameters: Record<string, string> = {};
  for (const match of twiml.matchAll(/<Parameter\b[^>]*>/g)) {
    const name = attribute(match[0], 'name');
    const value = attribute(match[0], 'value');
    if (name !== null) parameters[name] = value ?? '';
  }
  return {
    streamUrl: url,
    actionUrl: connect === undefined ? null : attribute(connect, 'action'),
    parameters,
  };
}

/**
 * Where to dial the stream: the TwiML names the public host (a tunnel or load balancer in front of
 * the engine); the client reaches the engine at `serverUrl` with the same path.
 */
export function localStreamUrl(streamUrl: string, serverUrl: string): string {
  const target = new URL(streamUrl);
  const server = new URL(serverUrl);
  const local = new URL(`${target.pathname}${target.search}`, server);
  local.protocol = server.protocol === 'https:' ? 'wss:' : 'ws:';
  return local.href;
}

/** The stream URL without its one-time token, for printing. */
function redactStreamUrl(url: string): string {
  return url.replace(/\/twilio\/media\/[^/?#]+/, '/twilio/media/{token}');
}

// ---------------------------------------------------------------------------------------------------
// A whole call

export type MediaCallStep =
  | { readonly kind: 'utterance'; readonly utterance: Utterance }
  | { readonly kind: 'dtmf'; readonly digit: string };

export interface MediaCallOptions {
  readonly url: string;
  readonly to: string;
  readonly from: string;
  readonly steps: readonly MediaCallStep[];
  readonly authToken?: string | undefined;
  readonly publicBaseUrl?: string | undefined;
  /** The AccountSid of the webhook and `start` (the CLI passes TWILIO_ACCOUNT_SID). Default AC000…0. */
  readonly accountSid?: string | undefined;
  readonly callSid?: string;
  /**
   * Barge-in: an utterance that follows another step starts this long after that step's reply began
   * to arrive, instead of once it has finished playing. The first step always waits for the
   * greeting to finish.
   */
  readonly bargeInAfterMs?: number | undefined;
  /**
   * A reply has finished once everything received has played and the line has then stayed quiet
   * this long (the pause before a caller answers). Default 700.
   */
  readonly replyQuietMs?: number;
  /** Give up on a reply (or the greeting) with no audio this long after the speech ended. Default 15 000. */
  readonly replyTimeoutMs?: number;
  /** How long a DTMF digit waits for a reply to start before the script moves on. Default 3 000. */
  readonly dtmfReplyWaitMs?: number;
  /** Keep the engine's audio for `MediaCallResult.playedAudio`. Default false. */
  readonly keepPlayedAudio?: boolean;
  /** Called as each turn (the greeting first) is complete. */
  readonly onTurn?: (turn: MediaTurn) => void;
}

/** What the caller sent in a turn. */
export interface SentItem {
  readonly kind: 'wav' | 'say' | 'audio' | 'dtmf';
  /** File name, text, label or digit. */
  readonly label: string;
  /** Length of the audio sent; null for a digit. */
  readonly audioMs: number | null;
}

/** The engine's account of a reply's first audio (`switchboard.audio`). */
export interface ReplyAudioTrace {
  /** The engine's turn number (0: the greeting). */
  readonly turn: number | null;
  /** 'cache' (pre-synthesized line) or 'tts'. */
  readonly source: string | null;
  /** Every `…Ms` field, e.g. speechStoppedToFinalMs, finalToFirstAudioMs, ttsFirstAudioMs. */
  readonly timings: Readonly<Record<string, number | null>>;
}

/** One turn as the caller saw it. Times (`…AtMs`) are milliseconds since the stream started. */
export interface MediaTurn {
  /** 0 for the greeting, then 1, 2, … in script order. */
  readonly index: number;
  readonly sent: SentItem | null;
  readonly startedAtMs: number;
  readonly speechStartAtMs: number | null;
  readonly speechEndAtMs: number | null;
  readonly firstAudioAtMs: number | null;
  /**
   * Caller's speech end (last voiced frame sent, or the digit) → the reply's first audio byte; for
   * the greeting, from the stream's start.
   */
  readonly responseMs: number | null;
  /** Audio received for the reply: everything that arrived after this turn's speech ended. */
  readonly replyAudioMs: number;
  /** Marks echoed and clears received while this turn was the latest. */
  readonly marksEchoed: number;
  readonly clears: number;
  /** The first clear after this turn began, relative to its speech start (negative: before it). */
  readonly clearAfterSpeechStartMs: number | null;
  /** Set when this utterance started while the previous reply was still playing. */
  readonly bargeIn: { readonly afterReplyAudioMs: number } | null;
  /** No reply audio came within the wait. */
  readonly timedOut: boolean;
  /** What the engine understood and answered (its `switchboard.turn` frame). */
  readonly transcript: string | null;
  readonly reply: string | null;
  readonly engine: TurnTrace | null;
  /** The first `switchboard.audio` frame of the turn: where the reply's audio came from, and when. */
  readonly audio: ReplyAudioTrace | null;
  readonly heard: readonly HeardReport[];
  /** Any other `switchboard.*` frames, as they came. */
  readonly traces: ReadonlyArray<{ readonly atMs: number; readonly frame: Record<string, unknown> }>;
}

export interface MediaCallReport {
  readonly callSid: string;
  readonly streamSid: string;
  /** The TwiML's stream URL, token elided. */
  readonly streamUrl: string;
  readonly actionUrl: string | null;
  /** Names of the TwiML's `<Parameter>`s (values may be secrets). */
  readonly parameters: readonly string[];
  readonly greeting: MediaTurn;
  readonly turns: readonly MediaTurn[];
  /** Who ended the call; for the engine (hang-up, transfer) its close code and reason. */
  readonly end: {
    readonly by: 'caller' | 'engine';
    readonly code: number;
    readonly reason: string;
    readonly atMs: number;
  };
  readonly totals: {
    readonly framesSent: number;
    readonly audioReceivedMs: number;
    readonly marksEchoed: number;
    readonly clears: number;
  };
  /** Frames Twilio would refuse or that made no sense, with how often. */
  readonly problems: ReadonlyArray<{ readonly reason: string; readonly count: number }>;
}

export interface MediaCallResult {
  readonly report: MediaCallReport;
  /** What the caller heard, 8 kHz PCM16 from the stream's start; null unless keepPlayedAudio. */
  readonly playedAudio: Int16Array | null;
}

interface TurnState {
  index: number;
  sent: SentItem | null;
  startedAt: number;
  progress: UtteranceProgress | null;
  speechStartAt: number | null;
  speechEndAt: number | null;
  firstAudioAt: number | null;
  replyBytes: number;
  marksAtStart: number;
  clearsAtStart: number;
  marksEchoed: number;
  clears: number;
  firstClearAt: number | null;
  bargeIn: { afterReplyAudioMs: number } | null;
  timedOut: boolean;
  engine: TurnTrace | null;
  audio: ReplyAudioTrace | null;
  heard: HeardReport[];
  traces: Array<{ atMs: number; frame: Record<string, unknown> }>;
}

/** Longest a reply may keep streaming before the script moves on regardless. */
const MAX_REPLY_MS = 120_000;
const CLOSE_WAIT_MS = 2_000;

function isTurnTrace(trace: unknown): trace is TurnTrace {
  const record = isRecord(trace) ? trace['record'] : undefined;
  return isRecord(record) && typeof record['utterance'] === 'string' && typeof record['reply'] === 'string';
}

/** The `…Ms` fields of a `switchboard.audio` frame, and its source. */
function replyAudioTrace(frame: Record<string, unknown>): ReplyAudioTrace {
  const timings: Record<string, number | null> = {};
  for (const [key, value] of Object.entries(frame))
    if (key.endsWith('Ms') && (typeof value === 'number' || value === null)) timings[key] = value;
  return {
    turn: typeof frame['turn'] === 'number' ? frame['turn'] : null,
    source: typeof frame['source'] === 'string' ? frame['source'] : null,
    timings,
  };
}

function isHeard(frame: Record<string, unknown>): boolean {
  return typeof frame['heard'] === 'string' && typeof frame['interrupted'] === 'boolean';
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function snapshot(t: TurnState, origin: number): MediaTurn {
  const at = (ms: number | null) => (ms === null ? null : round1(ms - origin));
  return {
    index: t.index,
    sent: t.sent,
    startedAtMs: round1(t.startedAt - origin),
    speechStartAtMs: at(t.speechStartAt),
    // The greeting's reply time counts from the stream's start, but nobody spoke.
    speechEndAtMs: t.sent === null ? null : at(t.speechEndAt),
    firstAudioAtMs: at(t.firstAudioAt),
    responseMs:
      t.firstAudioAt === null || t.speechEndAt === null ? null : round1(t.firstAudioAt - t.speechEndAt),
    replyAudioMs: round1(t.replyBytes / BYTES_PER_MS),
    marksEchoed: t.marksEchoed,
    clears: t.clears,
    clearAfterSpeechStartMs:
      t.firstClearAt === null || t.speechStartAt === null ? null : round1(t.firstClearAt - t.speechStartAt),
    bargeIn: t.bargeIn,
    timedOut: t.timedOut,
    transcript: t.engine?.record.utterance ?? null,
    reply: t.engine?.record.reply ?? null,
    engine: t.engine,
    audio: t.audio,
    heard: t.heard,
    traces: t.traces,
  };
}

/** Places one call over Media Streams, runs the script in real time and reports every turn. */
export async function runMediaCall(options: MediaCallOptions): Promise<MediaCallResult> {
  const now = () => performance.now();
  const quietMs = options.replyQuietMs ?? 700;
  const timeoutMs = options.replyTimeoutMs ?? 15_000;
  const callSid = options.callSid ?? newCallSid();
  const accountSid = options.accountSid ?? `AC${'0'.repeat(32)}`;
  const form: Record<string, string> = {
    AccountSid: accountSid,
    ApiVersion: '2010-04-01',
    CallSid: callSid,
    CallStatus: 'ringing',
    Direction: 'inbound',
    From: options.from,
    To: options.to,
  };
  const twiml = parseStreamTwiml(
    await postVoiceWebhook({
      url: options.url,
      publicBaseUrl: options.publicBaseUrl,
      authToken: options.authToken,
      form,
    }),
  );
  // A relative stream URL is relative to the webhook's (public) URL, as for Twilio.
  const streamUrl = new URL(twiml.streamUrl, new URL('/twilio/voice', options.publicBaseUrl ?? options.url))
    .href;
  const headers: Record<string, string> = { [TRACE_HEADER]: '1' };
  // Twilio signs the stream URL as the TwiML wrote it, with no parameters (§1.6).
  if (options.authToken) headers['x-twilio-signature'] = twilioSignature(options.authToken, streamUrl, {});
  const ws = new WebSocket(localStreamUrl(streamUrl, options.url), { headers, perMessageDeflate: false });

  const problems = new Map<string, number>();
  const problem = (reason: string) => problems.set(reason, (problems.get(reason) ?? 0) + 1);
  const sim = createTwilioStreamSimulator({
    callSid,
    accountSid,
    customParameters: twiml.parameters,
    send: (frame) => {
      if (ws.readyState !== WebSocket.OPEN) return false;
      ws.send(frame);
      return true;
    },
    keepPlayedAudio: options.keepPlayedAudio ?? false,
  });

  /** Set when the socket closes: by the engine (hang-up, transfer) unless `hangingUp`. */
  let closed: { code: number; reason: string; at: number } | null = null;
  let hangingUp = false;
  let timer: NodeJS.Timeout | undefined;

  // Conditions the script waits on, checked after every frame tick and every inbound frame.
  const checks = new Set<{ done: () => boolean; resolve: () => void }>();
  const poll = () => {
    for (const check of checks) {
      if (closed !== null || check.done()) {
        checks.delete(check);
        check.resolve();
      }
    }
  };
  const until = (done: () => boolean) =>
    closed !== null || done()
      ? Promise.resolve()
      : new Promise<void>((resolve) => checks.add({ done, resolve }));

  const turns: TurnState[] = [];
  const newTurn = (index: number, sent: SentItem | null, at: number): TurnState => ({
    index,
    sent,
    startedAt: at,
    progress: null,
    speechStartAt: null,
    speechEndAt: null,
    firstAudioAt: null,
    replyBytes: 0,
    marksAtStart: sim.stats.marksEchoed,
    clearsAtStart: sim.stats.clears,
    marksEchoed: 0,
    clears: 0,
    firstClearAt: null,
    bargeIn: null,
    timedOut: false,
    engine: null,
    audio: null,
    heard: [],
    traces: [],
  });
  const current = (): TurnState => turns[turns.length - 1]!;
  /** The turn incoming audio answers: the latest whose speech has ended (the greeting before any). */
  const replyOwner = (): TurnState => {
    for (let i = turns.length - 1; i > 0; i--) {
      const t = turns[i]!;
      t.speechEndAt ??= t.progress?.speechEndAtMs ?? null;
      if (t.speechEndAt !== null) return t;
    }
    return turns[0]!;
  };
  const takeTrace = (turn: TurnState, event: string, frame: Record<string, unknown>, at: number) => {
    const trace = frame['trace'];
    if (event === 'switchboard.turn' && isTurnTrace(trace)) {
      // Several engine turns in one of ours (a split utterance): the last one is the answer.
      if (turn.engine !== null)
        turn.traces.push({ atMs: round1(at - sim.startedAtMs), frame: { event, trace: turn.engine } });
      turn.engine = trace;
    } else if (event === 'switchboard.audio' && turn.audio === null) {
      turn.audio = replyAudioTrace(frame);
    } else if (event === 'switchboard.heard' && isHeard(frame)) {
      turn.heard.push({
        turn: typeof frame['turn'] === 'number' ? frame['turn'] : -1,
        heard: frame['heard'] as string,
        interrupted: frame['interrupted'] as boolean,
      });
    } else {
      turn.traces.push({ atMs: round1(at - sim.startedAtMs), frame });
    }
  };

  ws.on('message', (data, isBinary) => {
    const at = now();
    if (isBinary) {
      problem('binary frame (Twilio takes text frames only: error 31950)');
      return;
    }
    const frame = sim.receive((data as Buffer).toString('utf8'), at);
    if (frame.kind === 'media') {
      const owner = replyOwner();
      owner.firstAudioAt ??= at;
      owner.replyBytes += frame.bytes;
    } else if (frame.kind === 'clear') {
      current().firstClearAt ??= at;
    } else if (frame.kind === 'trace') {
      takeTrace(current(), frame.event, frame.frame, at);
    } else if (frame.kind === 'invalid') {
      problem(frame.reason);
    }
    poll();
  });
  ws.on('close', (code, reason) => {
    closed ??= { code, reason: reason.toString('utf8'), at: now() };
    clearTimeout(timer);
    poll();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      reject(new Error(`stream upgrade refused: HTTP ${res.statusCode}`));
      ws.terminate();
    });
  });
  ws.on('error', (err) => problem(`socket error: ${err.message}`));

  /** Frames go out on the stream's own 20 ms schedule, so timer lateness never accumulates. */
  const loop = () => {
    sim.tick(now());
    poll();
    if (closed === null && !hangingUp) timer = setTimeout(loop, Math.max(0, sim.nextFrameAtMs() - now()));
  };
  const replyFinished = (turn: TurnState, waitMs: number): boolean => {
    const at = now();
    if (turn.firstAudioAt === null) {
      if (at - (turn.speechEndAt ?? turn.startedAt) < waitMs) return false;
      turn.timedOut = true;
      return true;
    }
    if (at - turn.firstAudioAt > MAX_REPLY_MS) return true;
    // Any audio that arrives moves the end of playback, so this is also "nothing new came since".
    return at - sim.playEndAtMs >= quietMs;
  };
  /** A turn's marks and clears are those that came until the next turn began. */
  const finish = (turn: TurnState) => {
    turn.marksEchoed = sim.stats.marksEchoed - turn.marksAtStart;
    turn.clears = sim.stats.clears - turn.clearsAtStart;
    options.onTurn?.(snapshot(turn, sim.startedAtMs));
  };

  const openedAt = now();
  sim.open(openedAt);
  const greeting = newTurn(0, null, openedAt);
  greeting.speechEndAt = openedAt;
  turns.push(greeting);
  loop();
  await until(() => replyFinished(greeting, timeoutMs));

  const steps = options.steps;
  for (let s = 0; s < steps.length && closed === null; s++) {
    const step = steps[s]!;
    const previous = current();
    const at = now();
    finish(previous);
    const turn = newTurn(
      s + 1,
      step.kind === 'dtmf'
        ? { kind: 'dtmf', label: step.digit, audioMs: null }
        : { kind: step.utterance.kind, label: step.utterance.label, audioMs: step.utterance.durationMs },
      at,
    );
    turns.push(turn);
    if (previous.firstAudioAt !== null && sim.playEndAtMs > at)
      turn.bargeIn = { afterReplyAudioMs: round1(at - previous.firstAudioAt) };
    let waitMs = timeoutMs;
    if (step.kind === 'dtmf') {
      sim.dtmf(step.digit);
      turn.speechStartAt = turn.speechEndAt = at;
      waitMs = Math.min(timeoutMs, options.dtmfReplyWaitMs ?? 3_000);
    } else {
      const progress = sim.speak(step.utterance);
      turn.progress = progress;
      await until(() => progress.doneAtMs !== null);
      turn.startedAt = progress.firstFrameAtMs ?? turn.startedAt;
      turn.speechStartAt = progress.speechStartAtMs;
      turn.speechEndAt = progress.speechEndAtMs;
    }
    // With barge-in, the next utterance starts this long into this turn's reply.
    const bargeInAfterMs = steps[s + 1]?.kind === 'utterance' ? options.bargeInAfterMs : undefined;
    await until(
      () =>
        replyFinished(turn, waitMs) ||
        (bargeInAfterMs !== undefined &&
          turn.firstAudioAt !== null &&
          now() - turn.firstAudioAt >= bargeInAfterMs),
    );
  }

  hangingUp = true;
  clearTimeout(timer);
  const engineEnd = closed as { code: number; reason: string; at: number } | null;
  const endAt = engineEnd?.at ?? now();
  sim.stop(endAt);
  if (engineEnd === null) {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        ws.terminate();
        resolve();
      }, CLOSE_WAIT_MS);
      ws.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      ws.close(1000, 'caller hung up');
    });
  }
  finish(current());

  return {
    report: {
      callSid,
      streamSid: sim.identity.streamSid,
      streamUrl: redactStreamUrl(twiml.streamUrl),
      actionUrl: twiml.actionUrl,
      parameters: Object.keys(twiml.parameters),
      greeting: snapshot(greeting, sim.startedAtMs),
      turns: turns.slice(1).map((t) => snapshot(t, sim.startedAtMs)),
      end:
        engineEnd === null
          ? { by: 'caller', code: 1000, reason: 'caller hung up', atMs: round1(endAt - sim.startedAtMs) }
          : {
              by: 'engine',
              code: engineEnd.code,
              reason: engineEnd.reason,
              atMs: round1(endAt - sim.startedAtMs),
            },
      totals: {
        framesSent: sim.stats.framesSent,
        audioReceivedMs: round1(sim.stats.bytesReceived / BYTES_PER_MS),
        marksEchoed: sim.stats.marksEchoed,
        clears: sim.stats.clears,
      },
      problems: [...problems].map(([reason, count]) => ({ reason, count })),
    },
    playedAudio: options.keepPlayedAudio ? sim.playedAudio() : null,
  };
}

// ---------------------------------------------------------------------------------------------------
// Printing

function fmtMs(ms: number | null): string {
  return ms === null ? '-' : `${Math.round(ms)} ms`;
}

function fmtSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** `{ captureMs: 12, tier1Ms: null, … }` → `capture 12 · …` (nulls left out). */
function fmtStages(timings: object): string {
  return Object.entries(timings as Record<string, unknown>)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([stage, ms]) => `${stage.replace(/Ms$/, '')} ${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)}`)
    .join(' · ');
}

/** One turn, as the CLI prints it without --json. */
export function formatMediaTurn(t: MediaTurn): string {
  const pad = '         ';
  const lines: string[] = [];
  if (t.sent === null) {
    lines.push(
      `greeting › first audio ${fmtMs(t.firstAudioAtMs)} after the stream started · ${fmtSeconds(t.replyAudioMs)} of audio`,
    );
  } else if (t.sent.kind === 'dtmf') {
    lines.push(`#${t.index} dtmf › ${t.sent.label}`);
  } else {
    const speech =
      t.speechStartAtMs === null || t.speechEndAtMs === null
        ? ''
        : `; speech at ${(t.speechStartAtMs / 1000).toFixed(2)}–${fmtSeconds(t.speechEndAtMs)}`;
    lines.push(`#${t.index} caller › ${t.sent.label} (${fmtSeconds(t.sent.audioMs ?? 0)} of audio${speech})`);
  }
  if (t.bargeIn !== null)
    lines.push(`${pad}barged in ${fmtMs(t.bargeIn.afterReplyAudioMs)} into the previous reply`);
  if (t.transcript !== null) lines.push(`   heard › ${t.transcript}`);
  if (t.reply !== null) lines.push(`   agent › ${t.reply}`);
  const e = t.engine;
  if (e !== null) {
    const r = e.record;
    const tier = r.tier === 'fallback' ? 'fallback' : `tier ${r.tier}`;
    const what = r.scenarioId ? `${r.category ?? '?'}/${r.scenarioId}` : (r.category ?? 'no category');
    const cost =
      e.costUsd === null ? 'cost unknown' : `$${e.costUsd.toFixed(6)}${e.costEstimated ? ' (est.)' : ''}`;
    lines.push(`${pad}${tier} (${r.confidence.toFixed(2)}) · ${what} · warmup ${r.warmup} · ${cost}`);
  }
  if (t.sent !== null) {
    const engine = e === null ? '' : ` · engine turn ${fmtMs(e.latencyMs)} (own ${fmtMs(e.engineMs)})`;
    lines.push(
      t.timedOut ? `${pad}no reply audio` : `${pad}speech end → first audio ${fmtMs(t.responseMs)}${engine}`,
    );
  }
  if (t.audio !== null) {
    const source = t.audio.source === null ? '' : ` (${t.audio.source})`;
    lines.push(`${pad}audio ms: ${fmtStages(t.audio.timings)}${source}`);
  }
  if (e !== null) lines.push(`${pad}stages ms: ${fmtStages(e.record.timings)}`);
  if (t.sent !== null && !t.timedOut) lines.push(`${pad}reply audio ${fmtSeconds(t.replyAudioMs)}`);
  const marks = `marks echoed ${t.marksEchoed} · clears ${t.clears}`;
  const clear = t.clearAfterSpeechStartMs;
  lines.push(
    clear === null
      ? `${pad}${marks}`
      : `${pad}${marks} (the first ${fmtMs(Math.abs(clear))} ${clear < 0 ? 'before' : 'after'} the speech began)`,
  );
  for (const h of t.heard)
    lines.push(`${pad}turn ${h.turn} heard${h.interrupted ? ' (cut off)' : ''}: ${h.heard}`);
  for (const trace of t.traces) {
    const text = JSON.stringify(trace.frame);
    lines.push(`${pad}${fmtMs(trace.atMs)} ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`);
  }
  return lines.join('\n');
}

/** The end of the call and anything that went wrong, as printed after the last turn. */
export function formatMediaSummary(report: MediaCallReport): string {
  const end = report.end;
  const lines = [
    end.by === 'caller'
      ? `call ended: the caller hung up after ${fmtSeconds(end.atMs)}`
      : `call ended by the engine after ${fmtSeconds(end.atMs)}: close ${end.code}${end.reason ? ` "${end.reason}"` : ''}`,
    `sent ${report.totals.framesSent} frames · received ${fmtSeconds(report.totals.audioReceivedMs)} of audio · ` +
      `marks echoed ${report.totals.marksEchoed} · clears ${report.totals.clears}`,
  ];
  for (const p of report.problems) lines.push(`problem: ${p.reason}${p.count > 1 ? ` (×${p.count})` : ''}`);
  return lines.join('\n');
}
