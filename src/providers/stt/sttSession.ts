/**
 * The one interface every speech-to-text adapter implements for a live call. The transport feeds it
 * Twilio's inbound audio (8 kHz G.711 μ-law, normally 20 ms = 160 bytes per frame) and gets speech
 * edges and transcripts back through callbacks. Vendor types stop at the adapter.
 */
import { AppError } from '../../errors.ts';

export type SttErrorCode =
  /** The provider refused the connection or request with an HTTP status (`status`). */
  | 'ERR_STT_HTTP'
  /** The connection failed or dropped. Non-fatal while the adapter reconnects. */
  | 'ERR_STT_CONNECTION'
  /** A request or handshake ran past its timeout. */
  | 'ERR_STT_TIMEOUT'
  /** The provider could not transcribe one utterance; the session goes on. */
  | 'ERR_STT_TRANSCRIPTION_FAILED'
  /** The provider reported an error event (bad event, rate limit, ...). */
  | 'ERR_STT_PROVIDER'
  /** The provider sent something this adapter cannot read. */
  | 'ERR_STT_BAD_RESPONSE'
  /** One of the caller's callbacks threw; the adapter caught it so the socket survives. */
  | 'ERR_STT_CALLBACK_FAILED';

/** An STT failure. `fatal` means the session is over: no callbacks follow, frames are dropped. */
export class SttError extends AppError {
  declare readonly code: SttErrorCode;
  readonly fatal: boolean;
  /** HTTP status for ERR_STT_HTTP; otherwise null. */
  readonly status: number | null;

  constructor(
    code: SttErrorCode,
    message: string,
    options: { fatal: boolean; status?: number | null; retryable?: boolean; cause?: unknown },
  ) {
    super(code, message, {
      ...(options.retryable === undefined ? {} : { retryable: options.retryable }),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.name = 'SttError';
    this.fatal = options.fatal;
    this.status = options.status ?? null;
  }
}

/** Why speech ended: the VAD heard silence, or the connection dropped mid-utterance. */
export type SpeechStopReason = 'vad' | 'disconnected';

export interface SttFinalInfo {
  /** The provider's id for the utterance (realtime item id, or a local counter in batch mode). */
  readonly utteranceId: string;
  /** From speech stopped to the final transcript, when both were seen on this connection. */
  readonly latencyMs: number | null;
}

export interface SttCallbacks {
  /** The caller started talking: the barge-in trigger. */
  readonly onSpeechStarted: () => void;
  /** The caller stopped talking; one onFinal or one non-fatal onError for the utterance follows (unless `reason` is 'disconnected'). */
  readonly onSpeechStopped: (reason: SpeechStopReason) => void;
  /** The utterance's text so far (accumulated, not a delta). Realtime mode only, and often only after speech stopped. */
  readonly onPartial: (text: string) => void;
  /** The utterance's final text; '' when the provider heard no words (noise, a cough). */
  readonly onFinal: (text: string, info: SttFinalInfo) => void;
  /** Failures. When `err.fatal` is true the session is over; otherwise it carries on. */
  readonly onError: (err: SttError) => void;
  /**
   * Audio billed by this session: the same reports as the provider-level `onUsage` option, for the
   * call that owns the session (cost events need its call id). A throw is swallowed.
   */
  readonly onUsage?: (usage: SttUsage) => void;
}

export interface SttStats {
  /** 'connecting' and 'reconnecting' buffer frames; 'closed' and 'failed' drop them. */
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'closed' | 'failed';
  /** Frames handed to the provider (or, in batch mode, to an upload). */
  readonly framesSent: number;
  /** Frames that never reached the provider: overflowed the reconnect buffer, or arrived after close. */
  readonly framesDropped: number;
  /** μ-law bytes (= samples at 8 kHz) handed to the provider. */
  readonly bytesSent: number;
  /** bytesSent / 8000. */
  readonly audioSecondsSent: number;
  /** Successful opens after a dropped connection or a failed attempt. */
  readonly reconnects: number;
  readonly finals: number;
}

export interface SttSession {
  /**
   * One inbound frame: raw μ-law bytes (copied: the caller may reuse the buffer at once), or Twilio's
   * base64 `media.payload`. Synchronous and cheap: no promise or timer per frame.
   */
  sendMulaw(frame: Uint8Array | string): void;
  /**
   * A hint from the transport: true while no utterance can be ending (the caller is silent after
   * their last utterance was closed, or voiced in the middle of one), false while one may be (the
   * quiet that could end it). Nothing waits on relaxed audio, so an adapter may send it in larger
   * pieces; on false it sends what it holds at once, so the silence that ends an utterance is
   * never held. Optional: adapters without batching ignore it.
   */
  setRelaxed?(relaxed: boolean): void;
  /** Ends the session: closes the connection and aborts in-flight requests. Resolves when done; safe to call twice. */
  close(): Promise<void>;
  stats(): SttStats;
}

/** Audio sent to a paid STT model, reported for cost events. */
export interface SttUsage {
  readonly provider: 'openai';
  readonly model: string;
  /** Seconds of audio sent since the previous report. */
  readonly audioSeconds: number;
  /** List-price estimate from audioSeconds; null when the model's price is unknown (never 0). */
  readonly costUsd: number | null;
  /** What the provider itself reported for this span, when it did: reconcile against it. */
  readonly reported:
    | { readonly type: 'tokens'; readonly inputTokens: number; readonly outputTokens: number }
    | { readonly type: 'duration'; readonly seconds: number }
    | null;
}

/** What the transport holds: a factory of per-call sessions. */
export interface SttProvider {
  readonly provider: 'openai';
  readonly model: string;
  openSttSession(callbacks: SttCallbacks): SttSession;
}

/** Runs a caller callback; a throw is reported through onError (never from onError itself) instead of killing a socket handler. */
export function callSafely(callbacks: SttCallbacks, run: () => void): void {
  try {
    run();
  } catch (err) {
    try {
      callbacks.onError(
        new SttError('ERR_STT_CALLBACK_FAILED', `an STT callback threw: ${String(err)}`, {
          fatal: false,
          cause: err,
        }),
      );
    } catch {
      // onError itself threw: nothing left to tell.
    }
  }
}
