/**
 * Pre-synthesized audio for fixed lines (greeting, Tier 1/2 answers, fallbacks, closings): 8 kHz
 * μ-law, ready to send, so a cached line starts playing with no TTS round trip and costs nothing.
 *
 * Memory is the only store. μ-law is 8 kB per second of speech, so a company's few dozen fixed lines
 * come to a few MiB, and the default cap (64 MiB) holds those of dozens of companies. Each engine
 * fills its own cache when it compiles a company (and on first use after an eviction or restart), so
 * there is nothing to share, invalidate or keep consistent across processes; a shared store (Redis,
 * disk) would add a network hop to the one path that exists to avoid one.
 *
 * Entries are evicted least-recently-used by bytes. `getOrCreate` also de-duplicates work in
 * progress: a second request for a line that is being synthesized listens to that synthesis (from its
 * first chunk, as it streams) instead of starting another.
 */
import { createHash } from 'node:crypto';
import { MULAW_FRAME_BYTES } from '../audio/framer.ts';

/** 64 MiB: about 2.3 hours of μ-law speech. */
export const DEFAULT_AUDIO_CACHE_BYTES = 64 * 1024 * 1024;
/** Cached audio is read out in chunks of this size: 0.5 s, 25 whole frames. */
export const CACHED_CHUNK_BYTES = 4000;

export interface AudioCacheStats {
  readonly entries: number;
  readonly bytes: number;
  /** Lookups answered from memory (`get`, `getOrCreate`). */
  readonly hits: number;
  /** Lookups that found nothing stored (including those that joined a synthesis in progress). */
  readonly misses: number;
}

/**
 * Produces a line's audio: whole 160-byte multiples, in order. `signal` aborts when nobody is
 * listening any more; the producer then stops (and its audio is not stored).
 */
export type AudioProducer = (signal: AbortSignal) => AsyncIterable<Uint8Array>;

/**
 * A line's audio as chunks of whole frames, read-only: they are views of stored audio or chunks shared
 * with other listeners. Iterate it once.
 */
export interface AudioCacheRead extends AsyncIterable<Uint8Array> {
  /** 'cache': stored audio, all of it available now; 'live': a synthesis in progress. */
  readonly source: 'cache' | 'live';
}

export interface AudioCacheReadOptions {
  /** Aborting ends this read quietly (no error); the synthesis goes on while others listen. */
  readonly signal?: AbortSignal;
}

export interface AudioCache {
  readonly maxBytes: number;
  /** Whether `key` is stored. Counts nothing and does not refresh recency. */
  has(key: string): boolean;
  /** The stored audio (read-only), refreshed as most recently used; counts a hit or a miss. */
  get(key: string): Uint8Array | undefined;
  /**
   * Stores complete audio (a whole number of 160-byte frames; the cache keeps the array, do not
   * write to it afterwards) and evicts the least recently used entries beyond `maxBytes`. Audio
   * larger than `maxBytes` is not stored; returns whether it was.
   *
   * @throws RangeError when the length is not a multiple of 160.
   */
  set(key: string, audio: Uint8Array): boolean;
  /**
   * The audio for `key`: stored audio, or the synthesis of it already in progress, or a new one
   * started with `produce`. A synthesis that completes is stored; one that fails rejects every read
   * listening to it with its error; one whose listeners all leave is aborted and forgotten.
   */
  getOrCreate(key: string, produce: AudioProducer, options?: AudioCacheReadOptions): AudioCacheRead;
  stats(): AudioCacheStats;
  /** Drops every stored entry (syntheses in progress carry on and are stored when they complete). */
  clear(): void;
}

/** Collapses whitespace runs and trims, so "Hello,  world " and "Hello, world" share audio. */
export function normalizeCacheText(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * The key of a line's audio: everything that changes the sound. A cache may be shared only by speech
 * outputs whose TTS clients speak alike apart from these (same speaking instructions and speed).
 */
export function audioCacheKey(parts: {
  readonly provider: string;
  readonly model: string;
  readonly voice: string;
  readonly text: string;
}): string {
  return createHash('sha256')
    .update(
      `${parts.provider}\u0000${parts.model}\u0000${parts.voice}\u0000${normalizeCacheText(parts.text)}`,
    )
    .digest('hex');
}

/** A synthesis in progress: what it has produced so far, for every listener. */
interface Production {
  readonly chunks: Uint8Array[];
  bytes: number;
  state: 'running' | 'done' | 'failed' | 'cancelled';
  error: unknown;
  listeners: number;
  readonly controller: AbortController;
  /** Resolvers of listeners waiting for the next chunk or the end. */
  readonly waiting: Set<() => void>;
}

export function createAudioCache(options: { readonly maxBytes?: number } = {}): AudioCache {
  const maxBytes = options.maxBytes ?? DEFAULT_AUDIO_CACHE_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`createAudioCache: maxBytes must be a non-negative integer, got ${maxBytes}`);
  }
  /** Insertion order is recency order: the first entry is the least recently used. */
  const entries = new Map<string, Uint8Array>();
  const producing = new Map<string, Production>();
  let bytes = 0;
  let hits = 0;
  let misses = 0;

  function set(key: string, audio: Uint8Array): boolean {
    if (audio.length % MULAW_FRAME_BYTES !== 0) {
      throw new RangeError(`AudioCache.set: audio is ${audio.length} bytes, not a multiple of 160`);
    }
    const old = entries.get(key);
    if (old !== undefined) {
      entries.delete(key);
      bytes -= old.length;
    }
    if (audio.length > maxBytes) return false;
    entries.set(key, audio);
    bytes += audio.length;
    for (const [oldest, value] of entries) {
      if (bytes <= maxBytes) break;
      entries.delete(oldest);
      bytes -= value.length;
    }
    return true;
  }

  function lookup(key: string): Uint8Array | undefined {
    const audio = entries.get(key);
    if (audio === undefined) {
      misses++;
      return undefined;
    }
    hits++;
    entries.delete(key);
    entries.set(key, audio);
    return audio;
  }

  function wake(p: Production): void {
    for (const resolve of p.waiting) resolve();
    p.waiting.clear();
  }

  /** Resolves at the production's next chunk or end, or when `signal` aborts. */
  function changed(p: Production, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener('abort', done);
        p.waiting.delete(done);
        resolve();
      };
      p.waiting.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  function start(key: string, produce: AudioProducer): Production {
    const p: Production = {
      chunks: [],
      bytes: 0,
      state: 'running',
      error: undefined,
      listeners: 0,
      controller: new AbortController(),
      waiting: new Set(),
    };
    producing.set(key, p);
    void pump(key, p, produce);
    return p;
  }

  async function pump(key: string, p: Production, produce: AudioProducer): Promise<void> {
    try {
      for await (const chunk of produce(p.controller.signal)) {
        if (chunk.length % MULAW_FRAME_BYTES !== 0) {
          throw new RangeError(`AudioCache: a producer yielded ${chunk.length} bytes, not whole frames`);
        }
        if (chunk.length === 0) continue;
        p.chunks.push(chunk);
        p.bytes += chunk.length;
        wake(p);
      }
      // A producer that ends quietly once aborted has not finished: its audio is cut short.
      if (p.controller.signal.aborted) {
        p.state = 'cancelled';
      } else {
        p.state = 'done';
        set(key, concat(p.chunks, p.bytes));
      }
    } catch (err) {
      p.state = p.controller.signal.aborted ? 'cancelled' : 'failed';
      p.error = err;
    } finally {
      if (producing.get(key) === p) producing.delete(key);
      // Listeners wake to the final state: 'done', 'failed' or 'cancelled', never 'running'.
      wake(p);
    }
  }

  /** Stops a production nobody listens to; the next request for the key starts afresh. */
  function cancel(key: string, p: Production): void {
    if (producing.get(key) === p) producing.delete(key);
    p.controller.abort();
  }

  async function* listen(
    key: string,
    p: Production,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    p.listeners++;
    let next = 0;
    try {
      for (;;) {
        if (signal?.aborted === true) return;
        if (next < p.chunks.length) {
          yield p.chunks[next++]!;
          continue;
        }
        if (p.state === 'done' || p.state === 'cancelled') return;
        if (p.state === 'failed') throw p.error;
        await changed(p, signal);
      }
    } finally {
      p.listeners--;
      if (p.listeners === 0 && p.state === 'running') cancel(key, p);
    }
  }

  /** Stored audio in CACHED_CHUNK_BYTES views; everything is at hand, so nothing waits. */
  function readStored(audio: Uint8Array, signal: AbortSignal | undefined): AsyncIterator<Uint8Array, void> {
    let offset = 0;
    const finished = () => {
      offset = audio.length;
      return Promise.resolve({ done: true as const, value: undefined });
    };
    return {
      next() {
        if (offset >= audio.length || signal?.aborted === true) return finished();
        const end = Math.min(offset + CACHED_CHUNK_BYTES, audio.length);
        const value = audio.subarray(offset, end);
        offset = end;
        return Promise.resolve({ done: false, value });
      },
      return: finished,
    };
  }

  return {
    maxBytes,
    has: (key) => entries.has(key),
    get: lookup,
    set,
    getOrCreate(key, produce, readOptions = {}) {
      const stored = lookup(key);
      if (stored !== undefined) {
        const iterator = readStored(stored, readOptions.signal);
        return { source: 'cache', [Symbol.asyncIterator]: () => iterator };
      }
      const p = producing.get(key) ?? start(key, produce);
      const iterator = listen(key, p, readOptions.signal);
      return { source: 'live', [Symbol.asyncIterator]: () => iterator };
    },
    stats: () => ({ entries: entries.size, bytes, hits, misses }),
    clear() {
      entries.clear();
      bytes = 0;
    },
  };
}

function concat(chunks: readonly Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
