/**
 * The one interface every text-to-speech adapter implements: text in, a stream of 16-bit PCM
 * chunks out. Vendor types stop at the adapter; callers see samples, stats and TtsErrors.
 */
import { AppError } from '../../errors.ts';

export type TtsErrorCode =
  /** The caller's signal aborted the request (or the stream was left early). */
  | 'ERR_TTS_ABORTED'
  /** No first byte within `firstByteTimeoutMs`, or the whole answer ran past `timeoutMs`. */
  | 'ERR_TTS_TIMEOUT'
  /** The provider answered with an error status (`status`). */
  | 'ERR_TTS_HTTP'
  /** The connection failed or was cut mid-stream. */
  | 'ERR_TTS_CONNECTION'
  /** The answer was not raw audio (e.g. a JSON body with status 200). */
  | 'ERR_TTS_BAD_RESPONSE'
  /** The text cannot be sent as it is (too long: split it by sentence first). */
  | 'ERR_TTS_INPUT';

export class TtsError extends AppError {
  declare readonly code: TtsErrorCode;
  /** HTTP status for ERR_TTS_HTTP; otherwise null. */
  readonly status: number | null;

  constructor(
    code: TtsErrorCode,
    message: string,
    options: { status?: number | null; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(code, message, {
      ...(options.retryable === undefined ? {} : { retryable: options.retryable }),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.name = 'TtsError';
    this.status = options.status ?? null;
  }
}

export interface TtsRequest {
  /** Overrides the client's default voice. */
  readonly voice?: string;
  /** Speaking style; ignored by models that do not take it (tts-1, tts-1-hd). */
  readonly instructions?: string;
  /** 0.25–4.0. */
  readonly speed?: number;
  /** Aborting closes the HTTP stream on the wire; iteration then throws ERR_TTS_ABORTED. */
  readonly signal?: AbortSignal;
  /** Called once, with ms from the request to the first audio byte. */
  readonly onFirstByte?: (ms: number) => void;
  /**
   * This synthesis's usage, reported once when its stream ends, however it ends (complete, failed,
   * aborted, or left early by the consumer), in addition to the client-level `onUsage`. Not called
   * when no request was sent: empty text, input over the limit, or a stream never iterated.
   */
  readonly onUsage?: (usage: TtsUsage) => void;
}

export interface TtsStats {
  /** 'streaming' until the iteration ends; 'aborted' also when the consumer left the loop early. */
  readonly outcome: 'streaming' | 'complete' | 'aborted' | 'failed';
  /** From the request to the first audio byte; null until it arrives. */
  readonly firstByteMs: number | null;
  readonly samples: number;
  /** samples / sampleRate. */
  readonly audioSeconds: number;
  /** From the request to the end of the iteration; null while streaming. */
  readonly durationMs: number | null;
}

/**
 * PCM16 chunks (mono, `sampleRate` Hz) in order. Iterate it once; the request starts on the first
 * `next()`, and leaving the loop early closes the HTTP stream.
 */
export interface TtsStream extends AsyncIterable<Int16Array> {
  readonly sampleRate: number;
  readonly stats: TtsStats;
}

/** One synthesis, reported when its stream ends (however it ends) for cost events. */
export interface TtsUsage {
  readonly provider: 'openai';
  readonly model: string;
  readonly voice: string;
  readonly characters: number;
  readonly audioSeconds: number;
  /** List-price estimate; null when the model's price is unknown (never 0). */
  readonly costUsd: number | null;
  /** True when costUsd is derived from audio received (per-minute estimate, or a cut-short stream). */
  readonly estimated: boolean;
  readonly outcome: 'complete' | 'aborted' | 'failed';
  readonly durationMs: number;
}

export interface TtsClient {
  readonly provider: 'openai';
  readonly model: string;
  readonly sampleRate: number;
  synthesize(text: string, request?: TtsRequest): TtsStream;
}
