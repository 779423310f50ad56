/**
 * Text to Twilio-ready audio: 24 kHz PCM16 from the TTS client, decimated to 8 kHz (one Resampler per
 * synthesis, since it carries filter history), μ-law encoded, and handed out in whole 160-byte frames
 * as soon as they are complete; the end is padded with μ-law silence to a whole frame.
 *
 * Fixed lines (`cacheable`) go through the audio cache: served from memory when stored, otherwise
 * synthesized once however many calls ask at the same time, and stored when the synthesis completes.
 *
 * Every synthesis records one cost event (purpose 'tts') when its stream ends, however it ends,
 * billed to the request that started it; audio served from memory records nothing.
 */
import { MULAW_FRAME_BYTES } from '../audio/framer.ts';
import { MULAW_SILENCE, encodeMulaw } from '../audio/mulaw.ts';
import { RESAMPLER_INPUT_RATE_HZ, Resampler } from '../audio/resampler.ts';
import { newCostEvent, type CostSink } from '../cost/costEvent.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { isAbortError } from '../errors.ts';
import { TtsError, type TtsClient, type TtsUsage } from '../providers/tts/ttsClient.ts';
import { audioCacheKey, createAudioCache, type AudioCache } from './audioCache.ts';
import type { SpeechBilling, SpeechOut, SpeechRequest } from './types.ts';

export interface SpeechOutOptions {
  /** Must deliver 24 kHz PCM16 (the resampler's input rate). */
  readonly tts: TtsClient;
  readonly ledger: CostSink;
  readonly log: Logger;
  /**
   * The cache of fixed lines; by default one of this speech output's own, of `maxCacheBytes`. Share
   * one only between speech outputs whose TTS clients speak alike (see `audioCacheKey`).
   */
  readonly cache?: AudioCache;
  /** Cap of the default cache; ignored when `cache` is given. */
  readonly maxCacheBytes?: number;
  /** Lines `prefill` synthesizes at the same time. Default 3. */
  readonly prefillConcurrency?: number;
}

/**
 * Prefill runs beside live calls on the same TTS account: a few requests at a time fill a company's
 * lines in seconds without eating the rate limit the calls need.
 */
const DEFAULT_PREFILL_CONCURRENCY = 3;

/**
 * One synthesis's 24 kHz → 8 kHz μ-law path. Each `push` returns the whole frames completed so far
 * (a new array the consumer owns) or null; the partial frame stays in a reused buffer until the next
 * push, and `end` pads it with silence.
 */
class MulawFrames {
  readonly #resampler = new Resampler();
  /** μ-law not yet handed out: fewer than 160 bytes between pushes. */
  #pending = new Uint8Array(2048);
  #length = 0;

  push(pcm24k: Int16Array): Uint8Array | null {
    this.#encode(this.#resampler.processSamples(pcm24k));
    return this.#takeFrames();
  }

  /** Drains the resampler's delay line and pads the last frame. */
  end(): Uint8Array | null {
    this.#encode(this.#resampler.flush());
    const partial = this.#length % MULAW_FRAME_BYTES;
    if (partial !== 0) {
      const padded = this.#length + MULAW_FRAME_BYTES - partial;
      this.#pending.fill(MULAW_SILENCE, this.#length, padded);
      this.#length = padded;
    }
    return this.#takeFrames();
  }

  #encode(samples: Int16Array): void {
    if (samples.length === 0) return;
    // Room for the samples plus a frame of slack, so that `end` can pad in place.
    const needed = this.#length + samples.length + MULAW_FRAME_BYTES;
    if (needed > this.#pending.length) {
      const grown = new Uint8Array(Math.max(needed, 2 * this.#pending.length));
      grown.set(this.#pending.subarray(0, this.#length));
      this.#pending = grown;
    }
    encodeMulaw(samples, this.#pending.subarray(this.#length));
    this.#length += samples.length;
  }

  #takeFrames(): Uint8Array | null {
    const whole = this.#length - (this.#length % MULAW_FRAME_BYTES);
    if (whole === 0) return null;
    const frames = this.#pending.slice(0, whole);
    this.#pending.copyWithin(0, whole, this.#length);
    this.#length -= whole;
    return frames;
  }
}

/** Loggable facts about a synthesis failure: never its text, which may quote the caller. */
function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof TtsError) return { code: err.code, status: err.status, retryable: err.retryable };
  if (err instanceof AppError) return { code: err.code, retryable: err.retryable };
  return { error: err instanceof Error ? err.name : typeof err };
}

export function createSpeechOut(options: SpeechOutOptions): SpeechOut {
  const { tts, ledger, log } = options;
  if (tts.sampleRate !== RESAMPLER_INPUT_RATE_HZ) {
    throw new AppError(
      'ERR_SPEECH_SAMPLE_RATE',
      `TTS delivers ${tts.sampleRate} Hz; speech output needs ${RESAMPLER_INPUT_RATE_HZ} Hz PCM16`,
    );
  }
  const cache =
    options.cache ??
    createAudioCache(options.maxCacheBytes === undefined ? {} : { maxBytes: options.maxCacheBytes });
  const prefillConcurrency = options.prefillConcurrency ?? DEFAULT_PREFILL_CONCURRENCY;

  function recordUsage(usage: TtsUsage, billing: SpeechBilling): void {
    const audioMs = Math.round(usage.audioSeconds * 1000);
    try {
      ledger.record(
        newCostEvent({
          companyId: billing.companyId,
          callId: billing.callId,
          callSid: billing.callSid,
          turn: billing.turn,
          purpose: 'tts',
          action:
            usage.outcome === 'complete' ? 'completed' : usage.outcome === 'aborted' ? 'cancelled' : 'failed',
          provider: usage.provider,
          model: usage.model,
          costUsd: usage.costUsd,
          estimated: usage.estimated,
          durationMs: Math.round(usage.durationMs),
          audioMs,
          inputTokens: 0,
        }),
      );
    } catch (err) {
      log.warn({ err, companyId: billing.companyId, callId: billing.callId }, 'tts cost event not recorded');
    }
    log.debug(
      {
        outcome: usage.outcome,
        audioMs,
        durationMs: Math.round(usage.durationMs),
        characters: usage.characters,
        callId: billing.callId,
      },
      'tts synthesis ended',
    );
  }

  /** One live synthesis as whole μ-law frames; throws the client's TtsError (ERR_TTS_ABORTED on abort). */
  async function* synthesize(
    text: string,
    voice: string,
    billing: SpeechBilling,
    signal: AbortSignal,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const stream = tts.synthesize(text, {
      voice,
      signal,
      onUsage: (usage) => recordUsage(usage, billing),
    });
    const frames = new MulawFrames();
    for await (const pcm of stream) {
      const chunk = frames.push(pcm);
      if (chunk !== null) yield chunk;
    }
    const tail = frames.end();
    if (tail !== null) yield tail;
  }

  const keyOf = (text: string, voice: string) =>
    audioCacheKey({ provider: tts.provider, model: tts.model, voice, text });

  async function* frames(text: string, request: SpeechRequest): AsyncGenerator<Uint8Array, void, undefined> {
    const startedAt = performance.now();
    if (request.signal.aborted || text.trim() === '') return;
    const { voice, billing, signal } = request;
    let source: 'cache' | 'tts' = 'tts';
    let audio: AsyncIterable<Uint8Array>;
    if (request.cacheable) {
      const read = cache.getOrCreate(
        keyOf(text, voice),
        (productionSignal) => synthesize(text, voice, billing, productionSignal),
        { signal },
      );
      if (read.source === 'cache') source = 'cache';
      audio = read;
    } else {
      audio = synthesize(text, voice, billing, signal);
    }
    let first = true;
    try {
      for await (const chunk of audio) {
        if (first) {
          first = false;
          try {
            request.onFirstAudio?.(performance.now() - startedAt, source);
          } catch (err) {
            log.warn({ err }, 'onFirstAudio listener failed');
          }
        }
        yield chunk;
      }
    } catch (err) {
      // Barge-in or hang-up: the caller's abort is the expected way to stop talking.
      if (isAbortError(err)) return;
      throw err;
    }
  }

  return {
    frames,

    async prefill(lines, { voice, billing }) {
      const counts = { cached: 0, synthesized: 0, failed: 0 };
      // With no room to keep audio (AUDIO_CACHE_MB=0), synthesizing ahead would only cost money.
      if (cache.maxBytes === 0) return counts;
      /** Distinct non-empty lines by key, each with its position in `lines` for the logs. */
      const todo: { key: string; text: string; index: number }[] = [];
      const seen = new Set<string>();
      for (const [index, text] of lines.entries()) {
        if (typeof text !== 'string') {
          counts.failed++;
          log.warn({ index, companyId: billing.companyId }, 'prefill: line is not text');
          continue;
        }
        if (text.trim() === '') continue;
        const key = keyOf(text, voice);
        if (seen.has(key)) continue;
        seen.add(key);
        todo.push({ key, text, index });
      }
      let notStored = 0;
      let next = 0;
      const worker = async () => {
        for (let item = todo[next++]; item !== undefined; item = todo[next++]) {
          const { key, text, index } = item;
          if (cache.has(key)) {
            counts.cached++;
            continue;
          }
          try {
            const read = cache.getOrCreate(key, (signal) => synthesize(text, voice, billing, signal));
            // Drained only so the synthesis runs to its end; the cache keeps the audio.
            for await (const chunk of read) void chunk;
            counts.synthesized++;
            if (!cache.has(key)) notStored++;
          } catch (err) {
            counts.failed++;
            log.warn(
              { index, companyId: billing.companyId, ...describeError(err) },
              'prefill: line not synthesized',
            );
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(prefillConcurrency, todo.length) }, worker));
      if (notStored > 0) {
        log.warn(
          { notStored, maxBytes: cache.maxBytes, companyId: billing.companyId },
          'prefill: audio cache too small to keep every line',
        );
      }
      log.info({ ...counts, companyId: billing.companyId }, 'audio cache prefilled');
      return counts;
    },

    cacheStats: () => cache.stats(),
  };
}
