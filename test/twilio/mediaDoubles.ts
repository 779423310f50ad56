/**
 * Test doubles for the Media Streams playout and connection tests: a SpeechOut that yields frames of
 * known bytes (one byte value per text, so the audio on the wire tells which chunk it is), with
 * optional delays and failures, recording every request and whether it was aborted; and a logger
 * whose lines the test can read.
 */
import { Writable } from 'node:stream';
import { AppError } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/observability/logger.ts';
import type { SpeechOut, SpeechRequest } from '../../src/speech/types.ts';

export interface SpeechCall {
  readonly text: string;
  readonly request: SpeechRequest;
  /** performance.now() when the iteration began. */
  readonly startedAt: number;
  /** Chunks yielded so far. */
  yielded: number;
  /** The iteration ended (finished, failed, aborted or returned early). */
  ended: boolean;
}

export interface FakeSpeechOptions {
  /** Chunks per text. Default 2. */
  readonly chunks?: number;
  /** 160-byte frames per chunk. Default 3. */
  readonly framesPerChunk?: number;
  /** Wall-clock pause before each chunk (abortable). Default 0. */
  readonly delayMs?: number | ((text: string, chunk: number) => number);
  /** Make a text fail: before any audio, or after its first chunk. */
  readonly fail?: (text: string) => 'before' | 'after-first' | null;
  /** Bytes per chunk, overriding framesPerChunk (to send sizes that are not whole frames). */
  readonly chunkBytes?: number;
  /** What onFirstAudio reports. */
  readonly firstAudioMs?: number;
}

export interface FakeSpeech extends SpeechOut {
  readonly calls: SpeechCall[];
  /** The μ-law byte every frame of `text` is filled with (never 0xFF, the padding). */
  byteFor(text: string): number;
  /** Timers the double still holds (delays not yet over). */
  readonly pendingTimers: number;
}

export function fakeSpeech(options: FakeSpeechOptions = {}): FakeSpeech {
  const chunks = options.chunks ?? 2;
  const chunkBytes = options.chunkBytes ?? (options.framesPerChunk ?? 3) * 160;
  const calls: SpeechCall[] = [];
  const bytes = new Map<string, number>();
  let pendingTimers = 0;
  const byteFor = (text: string) => {
    let b = bytes.get(text);
    if (b === undefined) {
      b = (bytes.size % 250) + 1;
      bytes.set(text, b);
    }
    return b;
  };
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      pendingTimers += 1;
      const done = () => {
        pendingTimers -= 1;
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });

  return {
    calls,
    byteFor,
    get pendingTimers() {
      return pendingTimers;
    },
    async *frames(text: string, request: SpeechRequest) {
      const call: SpeechCall = { text, request, startedAt: performance.now(), yielded: 0, ended: false };
      calls.push(call);
      const byte = byteFor(text);
      const failure = options.fail?.(text) ?? null;
      try {
        for (let i = 0; i < chunks; i++) {
          const delay =
            typeof options.delayMs === 'function' ? options.delayMs(text, i) : (options.delayMs ?? 0);
          if (delay > 0) await sleep(delay, request.signal);
          if (request.signal.aborted) return;
          if (failure === 'before' || (failure === 'after-first' && i === 1)) {
            throw new AppError('ERR_TTS_HTTP', 'speech provider answered HTTP 500', { retryable: true });
          }
          if (i === 0) request.onFirstAudio?.(options.firstAudioMs ?? 7, request.cacheable ? 'cache' : 'tts');
          call.yielded += 1;
          yield new Uint8Array(chunkBytes).fill(byte);
        }
      } finally {
        call.ended = true;
      }
    },
    prefill: () => Promise.resolve({ cached: 0, synthesized: 0, failed: 0 }),
    cacheStats: () => ({ entries: 0, bytes: 0, hits: 0, misses: 0 }),
  };
}

/** A pino logger whose JSON lines are kept in `lines`. */
export function captureLogger(level = 'debug'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      callback();
    },
  });
  return { log: createLogger(level, stream), lines };
}
