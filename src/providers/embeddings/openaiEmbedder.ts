/**
 * Embedder over OpenAI embeddings. Concurrent calls made in the same event-loop turn share one HTTP
 * request, and vectors are cached by text, so repeated phrases ("yes", "no", "that's right") cost
 * nothing after the first time.
 */
import OpenAI, { APIConnectionError, APIError } from 'openai';
import { AppError } from '../../errors.ts';
import type { Embedder } from './embedder.ts';

export interface OpenAiEmbedderOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Defaults to the SDK's. */
  readonly baseURL?: string;
  /** Default text-embedding-3-small. */
  readonly model?: string;
  /** Shortened vectors (text-embedding-3-* only). Default: the model's full size. */
  readonly dimensions?: number;
  /** Most inputs per HTTP request. Default 256 (the API allows 2048). */
  readonly maxBatch?: number;
  /** Most cached vectors (least recently used are dropped). Default 2000; 0 disables the cache. */
  readonly cacheSize?: number;
  /** Per HTTP request. Default 10 000. */
  readonly timeoutMs?: number;
  /** Called once per HTTP request with the tokens it billed. */
  readonly onUsage?: (usage: { model: string; inputTokens: number; durationMs: number }) => void;
}

const DEFAULT_MODEL = 'text-embedding-3-small';

/** Full vector sizes of OpenAI's embedding models. */
const MODEL_DIMENSIONS: Readonly<Record<string, number>> = {
  'text-embedding-3-small': 1536,
  'text-embedding-3-large': 3072,
  'text-embedding-ada-002': 1536,
};

interface Waiter {
  readonly text: string;
  readonly resolve: (vector: Float32Array) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Creates the OpenAI embedder. Its id is "openai:<model>", with "@<dimensions>" appended when the
 * vectors are shortened, since vectors of different sizes must never be compared.
 */
export function createOpenAiEmbedder(options: OpenAiEmbedderOptions): Embedder {
  const model = options.model ?? DEFAULT_MODEL;
  const fullDimensions = MODEL_DIMENSIONS[model];
  const dimensions = options.dimensions ?? fullDimensions;
  if (dimensions === undefined) {
    throw new AppError('ERR_EMBEDDINGS_FAILED', `Unknown vector size for model ${model}: pass dimensions`);
  }
  const maxBatch = Math.max(1, options.maxBatch ?? 256);
  const cache = new LruCache<Float32Array>(options.cacheSize ?? 2000);
  const client = new OpenAI({
    apiKey: options.apiKey,
    maxRetries: 0,
    timeout: options.timeoutMs ?? 10_000,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
  });

  // Texts waiting for the next flush, and texts already requested (so a text is fetched once).
  let queue: Waiter[] = [];
  const inFlight = new Map<string, Promise<Float32Array>>();

  const fetchBatch = async (batch: readonly Waiter[]): Promise<void> => {
    const startedAt = performance.now();
    try {
      // No encoding_format: the SDK then asks for base64 and decodes it, which is smaller on the wire.
      const response = await client.embeddings.create({
        model,
        input: batch.map((w) => w.text),
        ...(options.dimensions === undefined ? {} : { dimensions: options.dimensions }),
      });
      options.onUsage?.({
        model,
        inputTokens: response.usage.prompt_tokens,
        durationMs: performance.now() - startedAt,
      });
      const vectors = new Array<Float32Array | undefined>(batch.length);
      for (const item of response.data) {
        if (item.embedding.length !== dimensions) {
          throw new AppError(
            'ERR_EMBEDDINGS_FAILED',
            `Embedding has ${item.embedding.length} dimensions, expected ${dimensions}`,
          );
        }
        vectors[item.index] = normalise(Float32Array.from(item.embedding));
      }
      batch.forEach((waiter, i) => {
        const vector = vectors[i];
        if (vector === undefined) {
          waiter.reject(new AppError('ERR_EMBEDDINGS_FAILED', `No embedding returned for input ${i}`));
          return;
        }
        cache.set(waiter.text, vector);
        waiter.resolve(vector);
      });
    } catch (err) {
      const error = toAppError(err);
      for (const waiter of batch) waiter.reject(error);
    } finally {
      for (const waiter of batch) inFlight.delete(waiter.text);
    }
  };

  const flush = () => {
    const pending = queue;
    queue = [];
    for (let start = 0; start < pending.length; start += maxBatch) {
      void fetchBatch(pending.slice(start, start + maxBatch));
    }
  };

  const vectorFor = (text: string): Promise<Float32Array> => {
    const cached = cache.get(text);
    if (cached !== undefined) return Promise.resolve(cached);
    let promise = inFlight.get(text);
    if (promise === undefined) {
      promise = new Promise<Float32Array>((resolve, reject) => {
        // setImmediate rather than a microtask: callers that each awaited something first still
        // land in the same batch as long as they call within this event-loop turn.
        if (queue.length === 0) setImmediate(flush);
        queue.push({ text, resolve, reject });
      });
      inFlight.set(text, promise);
    }
    return promise;
  };

  return {
    id: dimensions === fullDimensions ? `openai:${model}` : `openai:${model}@${dimensions}`,
    dimensions,
    async embed(texts, signal) {
      if (texts.length === 0) return [];
      if (texts.some((t) => t === '')) {
        throw new AppError('ERR_EMBEDDINGS_FAILED', 'Cannot embed an empty string');
      }
      if (signal?.aborted === true) throw abortedError();
      const all = Promise.all(texts.map(vectorFor));
      // The shared request keeps going when one caller gives up: others may be waiting on it, and
      // its vectors still fill the cache.
      const vectors = signal === undefined ? await all : await abortable(all, signal);
      // Copies, so a caller mutating its vector cannot corrupt the cache.
      return vectors.map((v) => v.slice());
    },
  };
}

function normalise(vector: Float32Array): Float32Array {
  let sumOfSquares = 0;
  for (const value of vector) sumOfSquares += value * value;
  const norm = Math.sqrt(sumOfSquares);
  // A zero vector has no direction; leave it rather than divide by zero.
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i] = vector[i]! / norm;
  return vector;
}

function abortedError(): AppError {
  return new AppError('ERR_ABORTED', 'Embedding aborted by the caller');
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError());
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof APIError && typeof err.status === 'number') {
    const retryable = err.status === 408 || err.status === 429 || err.status >= 500;
    return new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: ${err.message}`, {
      retryable,
      cause: err,
    });
  }
  const retryable = err instanceof APIConnectionError;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: ${message}`, {
    retryable,
    cause: err,
  });
}

/** A Map kept in recency order: the first key is the least recently used. */
class LruCache<V> {
  readonly #capacity: number;
  readonly #entries = new Map<string, V>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    if (this.#capacity <= 0) return;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.#capacity) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
  }
}
