/**
 * One Twilio Media Streams WebSocket (bidirectional `<Connect><Stream>`): validates every frame,
 * turns the caller's audio into domain events for the call actor (local VAD for barge-in, STT for
 * speech edges and transcripts, DTMF), and the actor's replies into audio, marks and `clear`
 * (src/speech/playout.ts). A caller's bytes can close this socket, never the process.
 *
 * Inbound path, per 20 ms frame: read the message (a scan without JSON.parse for a `media` frame in
 * the documented layout, the full parse for anything else), decode the payload into one buffer reused for
 * the whole call (checking it is base64 as it goes), hand the bytes to STT (which batches two to five
 * frames per append) and feed the local VAD. No timer, promise or per-frame buffer beyond the
 * message's own strings.
 *
 * Invalid frames (not JSON, a schema failure, binary, anything but `connected` before `start`, a
 * second `start`, a foreign streamSid) are counted and logged with a reason, never the frame. The
 * count is never reset by valid frames: Twilio's own frames are never invalid, so any invalid frame
 * is a bug or a hostile peer, and a total bound also closes a flood that alternates garbage with
 * valid frames. `maxInvalidFrames` (default 20) tolerates isolated glitches. A well-formed frame
 * with an `event` Twilio does not document is ignored once the stream has started (a future
 * protocol addition must not end calls) and counted before it. Closing with 1008 ends the call at
 * once (session stop reason 'protocol-violation'), not when the peer finishes the closing handshake.
 *
 * A fatal STT failure hangs up (reason 'stt-failed'): without transcripts the call cannot go on, and
 * a caller left talking to silence is worse than a clean end.
 *
 * Server-side settings for the integrator: `maxPayload: MAX_MEDIA_FRAME_BYTES` and
 * `perMessageDeflate: false` on the WebSocketServer (20 ms frames do not compress, and deflate costs
 * CPU and memory per socket).
 *
 * Frames Switchboard adds for the test client (only with `trace`, which real Twilio never asks for;
 * times in ms, null when unknown):
 *
 *   { event: 'switchboard.turn', streamSid, trace: TurnTrace }
 *   { event: 'switchboard.audio', streamSid, turn, source: 'cache' | 'tts' | null,
 *     speechStoppedToFinalMs, finalToFirstAudioMs, ttsFirstAudioMs, speechStoppedToFirstAudioMs }
 *       when a reply's first frame leaves; the caller timings refer to the utterance the reply answers
 *       (null for the greeting and reprompts)
 *   { event: 'switchboard.heard', streamSid, turn, heard, interrupted }
 *       when a reply ends: the sentences whose marks came back
 */
import { timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import type { CallEvent } from '../../machines/callMachine.ts';
import { Vad, type VadOptions } from '../audio/vad.ts';
import type { CallTransport, HeardReport, TurnTrace } from '../calls/callTransport.ts';
import type { CostSink } from '../cost/costEvent.ts';
import { newCostEvent } from '../cost/costEvent.ts';
import type { Logger } from '../observability/logger.ts';
import type { SttErrorCode, SttProvider, SttSession } from '../providers/stt/sttSession.ts';
import type { FirstAudioTiming, ReplyStats } from '../speech/playout.ts';
import { Playout } from '../speech/playout.ts';
import type { SpeechOut } from '../speech/types.ts';
import type { CallControl, Handoff, HandoffStore } from './callControl.ts';
import type { MediaFrame, StartFrame } from './mediaProtocol.ts';
import {
  PayloadDecoder,
  clearMessage,
  markMessage,
  mediaMessage,
  parseMediaFrame,
  scanMediaFrame,
} from './mediaProtocol.ts';
import { CLOSE_NORMAL, CLOSE_POLICY } from './relayConnection.ts';
import type { StreamGrant } from './streamTokens.ts';

/** What the connection needs of a call session: a structural subset of CallSession. */
export interface MediaCallSession {
  readonly id: string;
  readonly company: { readonly voice: { readonly ttsVoice: string } };
  readonly callSid: string | null;
  send(event: CallEvent): void;
  stop(reason: string): void;
  noteHeard?(report: HeardReport): void;
  readonly ended: boolean;
}

/** Timings of a reply's first audio (the `switchboard.audio` trace frame carries the same). */
export interface MediaAudioTiming {
  readonly turn: number;
  readonly source: 'cache' | 'tts' | null;
  /** From speak (or the first draft) to the first frame. */
  readonly startToFirstAudioMs: number;
  readonly speechStoppedToFinalMs: number | null;
  readonly finalToFirstAudioMs: number | null;
  readonly ttsFirstAudioMs: number | null;
  readonly speechStoppedToFirstAudioMs: number | null;
}

/** Optional metric hooks; each is called synchronously and must not throw. */
export interface MediaObserver {
  /** A frame was refused (counted towards maxInvalidFrames); `reason` never quotes the frame. */
  invalidFrame?(reason: string): void;
  /**
   * A reply was stopped while its audio was playing, and `clear` went out. `reactionMs`: from the
   * caller's speech onset (as the local VAD placed it) to the clear; null when no recent onset
   * explains the stop.
   */
  bargeIn?(info: { readonly turn: number; readonly reactionMs: number | null }): void;
  firstAudio?(timing: MediaAudioTiming): void;
  /** The playout waited this long for the socket to drain. */
  backpressureWait?(waitMs: number): void;
  /** Any STT error, fatal or not (the adapter's own reconnects included). */
  sttError?(code: SttErrorCode, fatal: boolean): void;
  /** The STT connection dropped and the adapter is reconnecting (a non-fatal ERR_STT_CONNECTION). */
  sttReconnect?(): void;
  replyEnded?(stats: ReplyStats): void;
}

export interface MediaDeps {
  readonly openCall: (companyId: string, transport: CallTransport) => MediaCallSession;
  readonly stt: SttProvider;
  readonly speech: SpeechOut;
  /** Twilio's REST API; null when not configured (then only handoff notes). */
  readonly callControl: CallControl | null;
  readonly handoffs: HandoffStore;
  readonly ledger: CostSink;
  readonly log: Logger;
  readonly observe?: MediaObserver;
}

export interface MediaSocketOptions {
  /** Close with 1008 when `start` has not arrived in this time. Default 5000. */
  readonly startTimeoutMs?: number;
  /** Close with 1008 after this many invalid frames (in total). Default 20. */
  readonly maxInvalidFrames?: number;
  /** Ping interval; a socket that answered neither the last ping nor sent anything is terminated. Default 15 000. */
  readonly heartbeatMs?: number;
  /** The playout waits while the socket holds more than this. Default 64 KiB (see playout.ts). */
  readonly maxBufferedBytes?: number;
  /** Send Switchboard's trace frames (the test client asks for them). */
  readonly trace?: boolean;
  readonly vad?: VadOptions;
  /** Longest wait for a handoff note or REST call before the socket closes anyway. Default 3000. */
  readonly handoffTimeoutMs?: number;
}

/** An STT speech start this soon after the local VAD's (or while it still hears speech) is the same utterance. */
const SPEECH_DEDUPE_MS = 1000;
/**
 * Audio after the local VAD last heard the caller before the STT adapter is told to relax
 * (`setRelaxed`) when the STT has not said the utterance is over (its own `speech_stopped`). It
 * must outlast the STT's own end of utterance (the realtime server's VAD waits
 * `silence_duration_ms`, 500 ms by default, after the last voice), so the frames that end an
 * utterance are never held; the VAD's stop already comes 400 ms (its hangover) after the last voice.
 */
const QUIET_AFTER_MS = 1500;
/** A stop this long after the caller's last speech onset is not a barge-in reaction. */
const BARGE_IN_WINDOW_MS = 2000;
const CLOSE_INTERNAL_ERROR = 1011;

export function handleMediaSocket(
  ws: WebSocket,
  grant: StreamGrant,
  token: string,
  deps: MediaDeps,
  options: MediaSocketOptions = {},
): void {
  const baseLog = deps.log.child({ transport: 'media', companyId: grant.companyId });
  let log = baseLog;
  const observe = deps.observe;
  const maxInvalid = options.maxInvalidFrames ?? 20;

  let phase: 'awaitingStart' | 'live' | 'ended' = 'awaitingStart';
  let session: MediaCallSession | null = null;
  let streamSid = '';
  let callSid: string | null = null;
  let playout: Playout | null = null;
  let stt: SttSession | null = null;
  let invalid = 0;
  let unknownEventsLogged = false;
  let alive = true;
  let socketClosed = false;
  let shutDown = false;
  /** The transfer or hangup being arranged; the socket closes once it has settled. */
  let handingOff: Promise<void> | null = null;

  // Caller timings (performance.now()) for barge-in and latency figures.
  let onsetAt = -Infinity;
  let localStoppedAt = -Infinity;
  let speechStoppedAt: number | null = null;
  /** The utterance the next reply answers: taken by the first reply opened after its final. */
  let pendingUtterance: { speechStoppedAt: number | null; finalAt: number } | null = null;

  const payloads = new PayloadDecoder();

  /** Audio time (vad.elapsedMs) of the end of the caller's last voice; 0 = the stream's start. */
  let lastVoiceAtMs = 0;
  /**
   * The caller's last utterance as the STT reports it: `speaking` between its speech start and stop
   * (the local VAD may not hear a soft voice at all: then this alone keeps the audio that ends the
   * utterance from being held); `ended` once it stopped the utterance itself and no speech was heard
   * since; `unknown` before the first, after a dropped socket, or once the local VAD hears speech.
   */
  let sttUtterance: 'unknown' | 'speaking' | 'ended' = 'unknown';
  /** What the STT adapter was last told (`setRelaxed`). */
  let relaxed = false;
  const vad = new Vad((event, atMs) => {
    const now = performance.now();
    if (event === 'speechStarted') {
      // The onset lies (elapsed − atMs) of audio before the frame that confirmed it.
      onsetAt = now - (vad.elapsedMs - atMs);
      sendEvent({ type: 'caller.speechStarted' });
      if (sttUtterance === 'ended') sttUtterance = 'unknown';
    } else {
      localStoppedAt = now;
      lastVoiceAtMs = atMs;
    }
  }, options.vad);

  const sendEvent = (event: CallEvent) => {
    if (session !== null && !session.ended) session.send(event);
  };

  const rawSocket = (ws as unknown as { _socket?: Duplex })._socket;

  const sendText = (text: string) => {
    if (ws.readyState === ws.OPEN) ws.send(text);
  };

  const sendTrace = (frame: Record<string, unknown>) => {
    if (options.trace) sendText(JSON.stringify({ ...frame, streamSid }));
  };

  const closeSocket = (code: number, reason: string) => {
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason.slice(0, 100));
  };

  /**
   * Closes with 1008 for a protocol violation, ending the call at once rather than when the peer
   * completes the closing handshake (if it ever does).
   */
  const refuse = (reason: string) => {
    closeSocket(CLOSE_POLICY, reason);
    session?.stop('protocol-violation');
    shutdown(reason);
  };

  /** Stops audio, STT and timers; closes the socket once any handoff has been arranged. */
  const shutdown = (reason: string) => {
    if (shutDown) return;
    shutDown = true;
    phase = 'ended';
    clearTimeout(startTimer);
    clearInterval(heartbeat);
    playout?.close();
    const closing = stt;
    stt = null;
    closing?.close().catch((err: unknown) => {
      log.warn({ err: { message: (err as Error).message } }, 'closing the STT session failed');
    });
    // A handoff being arranged closes the socket itself, once Twilio can act on it.
    if (handingOff === null) closeSocket(CLOSE_NORMAL, reason);
  };

  /** Ends the stream so Twilio moves on: REST call control when we have it, else a handoff note. */
  const handOff = (handoff: Handoff, reason: string) => {
    if (handingOff !== null) return;
    log.info({ action: handoff.action, reason }, 'ending the stream');
    playout?.close();
    const sid = callSid;
    const arrange = async () => {
      if (sid === null) return;
      if (deps.callControl !== null) {
        try {
          if (handoff.action === 'transfer') await deps.callControl.transfer(sid, handoff.number);
          else await deps.callControl.hangup(sid);
          return;
        } catch (err) {
          log.warn(
            { err: { code: (err as { code?: string }).code, message: (err as Error).message } },
            'call control failed; leaving a handoff note instead',
          );
        }
      }
      try {
        await deps.handoffs.put(sid, handoff);
      } catch (err) {
        log.error({ err: { message: (err as Error).message } }, 'could not store the handoff note');
      }
    };
    handingOff = settleWithin(arrange(), options.handoffTimeoutMs ?? 3000);
    void handingOff.then(() => closeSocket(CLOSE_NORMAL, reason));
  };

  const transport: CallTransport = {
    speak(text, speakOptions) {
      if (playout === null) {
        log.warn({ turn: speakOptions.turn }, 'speak before the stream started; skipped');
        queueMicrotask(speakOptions.onDone);
        return () => undefined;
      }
      return playout.speak(text, {
        turn: speakOptions.turn,
        cacheable: speakOptions.cacheable,
        onDone: speakOptions.onDone,
      });
    },
    draft(turn, textSoFar) {
      playout?.draft(turn, textSoFar);
    },
    abandonDraft(turn) {
      playout?.abandonDraft(turn);
    },
    transfer(number, reason) {
      handOff(number === undefined ? { action: 'hangup' } : { action: 'transfer', number }, reason);
    },
    hangup(reason) {
      handOff({ action: 'hangup' }, reason);
    },
    trace(trace: TurnTrace) {
      sendTrace({ event: 'switchboard.turn', trace });
    },
    close(reason) {
      shutdown(reason);
    },
  };

  const onFirstAudio = (timing: FirstAudioTiming) => {
    const stoppedAt = timing.caller?.speechStoppedAt ?? null;
    const finalAt = timing.caller?.finalAt ?? null;
    const audio: MediaAudioTiming = {
      turn: timing.turn,
      source: timing.source,
      startToFirstAudioMs: round(timing.sinceStartMs),
      speechStoppedToFinalMs: stoppedAt === null || finalAt === null ? null : round(finalAt - stoppedAt),
      finalToFirstAudioMs: finalAt === null ? null : round(timing.at - finalAt),
      ttsFirstAudioMs: timing.ttsFirstAudioMs === null ? null : round(timing.ttsFirstAudioMs),
      speechStoppedToFirstAudioMs: stoppedAt === null ? null : round(timing.at - stoppedAt),
    };
    observe?.firstAudio?.(audio);
    const { startToFirstAudioMs: _, ...traced } = audio;
    sendTrace({ event: 'switchboard.audio', ...traced });
  };

  const onReplyEnded = (stats: ReplyStats) => {
    observe?.replyEnded?.(stats);
    if (stats.outcome === 'stopped' && stats.clearSent) {
      const sinceOnset = performance.now() - onsetAt;
      observe?.bargeIn?.({
        turn: stats.turn,
        reactionMs: sinceOnset <= BARGE_IN_WINDOW_MS ? round(sinceOnset) : null,
      });
    }
  };

  const onHeard = (report: HeardReport) => {
    if (session !== null && !session.ended) session.noteHeard?.(report);
    sendTrace({ event: 'switchboard.heard', ...report });
  };

  const startTimer = setTimeout(() => {
    if (phase !== 'awaitingStart') return;
    log.warn('no start message in time; closing');
    refuse('start timeout');
  }, options.startTimeoutMs ?? 5000);

  const heartbeat = setInterval(() => {
    if (!alive) {
      log.warn('no pong and no frame since the last ping; terminating');
      ws.terminate();
      return;
    }
    alive = false;
    ws.ping();
  }, options.heartbeatMs ?? 15_000);

  const rejectFrame = (reason: string) => {
    invalid += 1;
    log.warn({ reason, invalidFrames: invalid }, 'invalid media stream frame');
    observe?.invalidFrame?.(reason);
    if (invalid >= maxInvalid && phase !== 'ended') refuse('too many invalid frames');
  };

  const openStt = (s: MediaCallSession) => {
    try {
      stt = deps.stt.openSttSession({
        onSpeechStarted: () => {
          sttUtterance = 'speaking';
          const now = performance.now();
          // The local VAD usually heard this utterance first; one barge-in event is enough.
          if (vad.speaking || now - localStoppedAt < SPEECH_DEDUPE_MS) return;
          onsetAt = now;
          sendEvent({ type: 'caller.speechStarted' });
        },
        onSpeechStopped: (reason) => {
          // Only the STT's own end of utterance: a dropped socket ends nothing on the new one.
          if (reason === 'vad') sttUtterance = 'ended';
          else if (sttUtterance === 'speaking') sttUtterance = 'unknown';
          speechStoppedAt = performance.now();
          sendEvent({ type: 'caller.speechStopped' });
        },
        onPartial: (text) => sendEvent({ type: 'caller.transcriptPartial', text }),
        onFinal: (text) => {
          if (text.trim() === '') return;
          pendingUtterance = { speechStoppedAt, finalAt: performance.now() };
          speechStoppedAt = null;
          sendEvent({ type: 'caller.transcriptFinal', text });
        },
        onError: (err) => {
          observe?.sttError?.(err.code, err.fatal);
          if (!err.fatal && err.code === 'ERR_STT_CONNECTION') observe?.sttReconnect?.();
          if (!err.fatal) {
            log.warn({ code: err.code, status: err.status }, 'speech recognition error');
            return;
          }
          log.error({ code: err.code, status: err.status }, 'speech recognition failed; hanging up');
          sttFailed();
        },
        onUsage: (usage) => {
          deps.ledger.record(
            newCostEvent({
              companyId: grant.companyId,
              callId: s.id,
              callSid,
              turn: null,
              purpose: 'stt',
              action: 'completed',
              provider: usage.provider,
              model: usage.model,
              costUsd: usage.costUsd,
              estimated: usage.reported === null,
              audioMs: Math.round(usage.audioSeconds * 1000),
            }),
          );
        },
      });
    } catch (err) {
      log.error({ err: { message: (err as Error).message } }, 'could not open an STT session; hanging up');
      sttFailed();
    }
  };

  const sttFailed = () => {
    // Outside the STT callback that told us: stopping closes that very session.
    queueMicrotask(() => {
      if (shutDown) return;
      handOff({ action: 'hangup' }, 'stt-failed');
      session?.stop('stt-failed');
      shutdown('stt-failed');
    });
  };

  const onStart = (frame: StartFrame) => {
    if (phase !== 'awaitingStart') return rejectFrame('second start');
    clearTimeout(startTimer);
    const start = frame.start;
    if (
      (grant.callSid !== null && start.callSid !== grant.callSid) ||
      !sameToken(start.customParameters?.token, token)
    ) {
      log.warn('start does not match the webhook that minted the token; closing');
      return refuse('call mismatch');
    }
    const format = start.mediaFormat;
    if (format.encoding !== 'audio/x-mulaw' || format.sampleRate !== 8000 || format.channels !== 1) {
      log.warn(
        { encoding: format.encoding, sampleRate: format.sampleRate },
        'unsupported media format; closing',
      );
      return refuse('unsupported media format');
    }
    streamSid = frame.streamSid;
    callSid = start.callSid;
    log = baseLog.child({ callSid, streamSid });
    let s: MediaCallSession;
    try {
      s = deps.openCall(grant.companyId, transport);
    } catch (err) {
      log.error({ err: { message: (err as Error).message } }, 'could not open call');
      phase = 'ended';
      handOff({ action: 'hangup' }, 'company unavailable');
      return;
    }
    session = s;
    phase = 'live';
    const sid = streamSid;
    playout = new Playout({
      link: {
        sendAudio: (payload) => sendText(mediaMessage(sid, payload)),
        sendMark: (name) => sendText(markMessage(sid, name)),
        sendClear: () => sendText(clearMessage(sid)),
        // ws writes each message on its own (a writev per frame); corking its TCP socket around a
        // burst of frames sends the burst in one. ws keeps the socket as `_socket` (no public API).
        cork: () => rawSocket?.cork(),
        uncork: () => rawSocket?.uncork(),
        get bufferedAmount() {
          return ws.bufferedAmount;
        },
        get open() {
          return ws.readyState === ws.OPEN;
        },
      },
      speech: deps.speech,
      voice: s.company.voice.ttsVoice,
      billing: (turn) => ({ companyId: grant.companyId, callId: s.id, callSid, turn }),
      log,
      ...(options.maxBufferedBytes === undefined ? {} : { maxBufferedBytes: options.maxBufferedBytes }),
      callerTiming: () => {
        const utterance = pendingUtterance;
        pendingUtterance = null;
        return utterance;
      },
      observer: {
        onHeard,
        onFirstAudio,
        onReplyEnded,
        onBackpressure: (waitMs) => observe?.backpressureWait?.(waitMs),
      },
    });
    openStt(s);
    s.send({ type: 'twilio.start', callSid });
  };

  /** A media frame whose payload decoded to `audio` (a view reused by the next frame). */
  const onMedia = (frame: MediaFrame, audio: Buffer) => {
    if (phase !== 'live') return phase === 'ended' ? undefined : rejectFrame('media before start');
    if (frame.streamSid !== streamSid) return rejectFrame('media for another stream');
    // A bidirectional stream carries the caller only; anything else is not ours to hear.
    if (frame.media.track !== 'inbound') return;
    // The bytes, decoded once: the STT adapter batches them without decoding again.
    stt?.sendMulaw(audio);
    vad.push(audio);
    // Nothing waits on this audio unless an utterance may be ending: in speech, a clearly voiced
    // frame puts the end at least the STT's silence window away, and the first quieter frame sends
    // what is held; after speech, once the STT has closed the utterance (or long after the voice),
    // unless the STT hears one the local VAD does not.
    const relax = vad.speaking
      ? vad.loud
      : sttUtterance === 'ended' ||
        (sttUtterance === 'unknown' && vad.elapsedMs - lastVoiceAtMs >= QUIET_AFTER_MS);
    if (relax !== relaxed) {
      relaxed = relax;
      stt?.setRelaxed?.(relax);
    }
  };

  const onFrame = (text: string) => {
    // A media frame in the documented layout is read without JSON.parse; a payload that does not
    // decode, and every other frame, take the full parse (which explains a refusal).
    const scanned = scanMediaFrame(text);
    if (scanned !== undefined) {
      const audio = payloads.decode(scanned.media.payload);
      if (audio !== undefined) return onMedia(scanned, audio);
    }
    const parsed = parseMediaFrame(text);
    if (!parsed.ok) {
      if (parsed.unknownEvent && phase === 'live') {
        if (!unknownEventsLogged) log.info('ignoring a media stream event Twilio does not document');
        unknownEventsLogged = true;
        return;
      }
      return rejectFrame(parsed.reason);
    }
    const frame = parsed.frame;
    // The parse checked the payload, and the decoder accepts exactly what it accepts.
    if (frame.event === 'media') return onMedia(frame, payloads.decode(frame.media.payload)!);
    if (frame.event === 'connected')
      return phase === 'awaitingStart' ? undefined : rejectFrame('late connected');
    if (frame.event === 'start') return onStart(frame);
    if (phase !== 'live') return phase === 'ended' ? undefined : rejectFrame(`${frame.event} before start`);
    if (frame.streamSid !== streamSid) return rejectFrame(`${frame.event} for another stream`);
    switch (frame.event) {
      case 'mark':
        playout?.onMark(frame.mark.name);
        return;
      case 'dtmf':
        sendEvent({ type: 'caller.dtmf', digit: frame.dtmf.digit });
        return;
      case 'stop':
        log.info('twilio stopped the stream');
        session?.stop('stream-stopped');
        shutdown('stream-stopped');
        return;
    }
  };

  ws.on('message', (data: RawData, isBinary: boolean) => {
    alive = true;
    if (socketClosed || phase === 'ended') return;
    if (isBinary) return rejectFrame('binary frame');
    try {
      onFrame(rawText(data));
    } catch (err) {
      // A bug here must cost this call, not the process (a throw would escape ws's data handler).
      log.error({ err: { message: (err as Error).message } }, 'media frame handling failed; closing');
      closeSocket(CLOSE_INTERNAL_ERROR, 'internal error');
      session?.stop('internal-error');
      shutdown('internal-error');
    }
  });
  ws.on('pong', () => {
    alive = true;
  });
  ws.on('close', () => {
    socketClosed = true;
    shutdown('socket-closed');
    session?.stop('socket-closed');
  });
  ws.on('error', (err) => log.warn({ err: { message: err.message } }, 'media socket error'));
}

/** Constant-time comparison of the token Twilio echoed with the one in the URL. */
function sameToken(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Resolves when `work` settles or after `ms`, whichever is first; leaves no timer behind. */
function settleWithin(work: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    work.then(done, done);
  });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
