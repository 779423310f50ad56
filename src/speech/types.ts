/**
 * The speech output side of a Media Streams call: text in, Twilio-ready audio out (8 kHz G.711
 * μ-law in whole 20 ms / 160-byte frames), from the pre-synthesized cache or live TTS.
 */

/** Who pays for a synthesis (cost events). */
export interface SpeechBilling {
  readonly companyId: string;
  /** Null for cache fills outside a call. */
  readonly callId: string | null;
  readonly callSid: string | null;
  readonly turn: number | null;
}

export interface SpeechRequest {
  readonly voice: string;
  /** Serve from / store in the audio cache (fixed lines). */
  readonly cacheable: boolean;
  /** Aborting stops the TTS request on the wire; iteration then ends quietly. */
  readonly signal: AbortSignal;
  readonly billing: SpeechBilling;
  /** ms from the request to the first audio (≈0 for cached audio), once. */
  readonly onFirstAudio?: (ms: number, source: 'cache' | 'tts') => void;
}

export interface SpeechOut {
  /**
   * μ-law 8 kHz audio for `text`, in chunks whose lengths are whole multiples of 160 bytes (the
   * last padded with μ-law silence). Cached text is yielded from memory at once. Errors reject
   * the iteration with an AppError (ERR_TTS_*); an abort ends it without error. Stop with the
   * signal rather than `return()`: a pending `next()` waits for audio, the signal wakes it.
   *
   * Chunks are read-only: they may be views of cached audio or shared with another request
   * listening to the same synthesis. Each request iterates its own `frames(...)` once.
   */
  frames(text: string, request: SpeechRequest): AsyncIterable<Uint8Array>;
  /**
   * Synthesizes and caches fixed lines ahead of calls (on company import/compile); never rejects.
   * Counts distinct non-empty lines: already cached, synthesized now (or joined a synthesis in
   * progress), failed (logged without the text).
   */
  prefill(
    lines: readonly string[],
    options: { voice: string; billing: SpeechBilling },
  ): Promise<{ cached: number; synthesized: number; failed: number }>;
  readonly cacheStats: () => { entries: number; bytes: number; hits: number; misses: number };
}

/**
 * Splits streaming text into sentences for TTS: feed it the whole text so far (growing); it returns
 * the sentences completed since the previous call. `flush` returns the rest at the end.
 */
export interface SentenceChunker {
  push(textSoFar: string): string[];
  flush(finalText: string): string[];
  /**
   * Characters handed out so far: the index, in the text last pushed (or flushed), just past the
   * last piece handed out (never on whitespace). `textSoFar.slice(0, consumed)` is what was said.
   */
  readonly consumed: number;
}
