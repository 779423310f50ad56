/**
 * Embedder over OpenAI embeddings. Concurrent calls made in the same event-loop turn share one HTTP
 * request, and vectors are cached by text, so repeated phrases ("yes", "no", "that's right") cost
 * nothing after the first time.
 *
 * It speaks HTTP itself (src/providers/http/), as the LLM and speech adapters do, rather than through
 * the `openai` SDK: a Tier 2 turn on a new utterance waits on one embeddings request, and through the
 * SDK each cost about 0.55 ms of CPU against about 0.1 ms here (README, "Packages"). Vectors are asked
 * for as base64 (a quarter of the JSON's size, decoded straight into floats); a server that ignores
 * `encoding_format` and answers arrays of numbers works too.
 */
import { AppError } from '../../errors.ts';
import {
  HttpAnswerError,
  OPENAI_API_BASE_URL,
  createHttpClient,
  isSuccessStatus,
  readJsonBody,
} from '../http/httpClient.ts';
import { startDeadline } from '../requestDeadline.ts';
import type { Embedder } from './embedder.ts';

export interface OpenAiEmbedderOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Default https://api.openai.com/v1. */
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

/** The fields of an embeddings response this adapter reads. */
interface EmbeddingItem {
  readonly index?: unknown;
  readonly embedding?: unknown;
}
interface EmbeddingsResponse {
  readonly data?: unknown;
  readonly usage?: { readonly prompt_tokens?: unknown };
}

/** Room for the JSON around the vectors of one response. */
const RESPONSE_OVERHEAD_BYTES = 1024 * 1024;

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
  const timeoutMs = options.timeoutMs ?? 10_000;
  // No retries: a turn waits on this; callers decide what a failure means (Tier 3, a fallback).
  const http = createHttpClient({ apiKey: options.apiKey, baseURL: options.baseURL ?? OPENAI_API_BASE_URL });
  // The largest answer a full batch can bring, as base64 or (from a server ignoring the encoding)
  // as decimal numbers of up to ~25 characters each; anything beyond is not an embeddings answer.
  const maxResponseBytes = maxBatch * dimensions * 25 + RESPONSE_OVERHEAD_BYTES;

  // Texts waiting for the next flush, and texts already requested (so a text is fetched once).
  let queue: Waiter[] = [];
  const inFlight = new Map<string, Promise<Float32Array>>();

  /** One embeddings request: the vectors in input order, normalised. Errors are AppErrors. */
  const request = async (texts: readonly string[]): Promise<Float32Array[]> => {
    const startedAt = performance.now();
    // Not tied to any caller's signal: the request is shared, and its vectors fill the cache.
    const deadline = startDeadline(undefined, timeoutMs);
    try {
      const response = await http.request({
        method: 'POST',
        path: '/embeddings',
        json: {
          model,
          input: texts,
          encoding_format: 'base64',
          ...(options.dimensions === undefined ? {} : { dimensions: options.dimensions }),
        },
        signal: deadline.signal,
      });
      if (!isSuccessStatus(response.status)) {
        const status = response.status;
        const message = await http.errorMessage(response);
        throw new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: HTTP ${status}: ${message}`, {
          retryable: status === 408 || status === 429 || status >= 500,
        });
      }
      const parsed = (await readJsonBody(response.body, maxResponseBytes)) as EmbeddingsResponse | null;
      // Billed once answered, whether or not its vectors turn out usable.
      const inputTokens = parsed?.usage?.prompt_tokens;
      options.onUsage?.({
        model,
        inputTokens: typeof inputTokens === 'number' ? inputTokens : 0,
        durationMs: performance.now() - startedAt,
      });
      return vectorsOf(parsed ?? {}, texts.length, dimensions);
    } catch (err) {
      throw toAppError(err, deadline.endedBy === 'timeout' ? timeoutMs : null, (text) => http.redact(text));
    } finally {
      deadline.dispose();
    }
  };

  const fetchBatch = async (batch: readonly Waiter[]): Promise<void> => {
    try {
      const vectors = await request(batch.map((w) => w.text));
      batch.forEach((waiter, i) => {
        const vector = vectors[i]!;
        cache.set(waiter.text, vector);
        waiter.resolve(vector);
      });
    } catch (err) {
      for (const waiter of batch) waiter.reject(err);
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

/**
 * The vectors of an answer, in input order and normalised: `count` of them, each of `dimensions`
 * floats, given as base64 of little-endian float32 or as an array of numbers.
 */
function vectorsOf(answer: EmbeddingsResponse, count: number, dimensions: number): Float32Array[] {
  const vectors = new Array<Float32Array | undefined>(count);
  const items: readonly unknown[] = Array.isArray(answer.data) ? answer.data : [];
  for (const item of items) {
    const { index, embedding } = (typeof item === 'object' && item !== null ? item : {}) as EmbeddingItem;
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count) {
      throw new AppError(
        'ERR_EMBEDDINGS_FAILED',
        `OpenAI embeddings failed: an embedding has no valid index`,
      );
    }
    const vector = decodeEmbedding(embedding);
    if (vector.length !== dimensions) {
      throw new AppError(
        'ERR_EMBEDDINGS_FAILED',
        `OpenAI embeddings failed: an embedding has ${vector.length} dimensions, expected ${dimensions}`,
      );
    }
    vectors[index] = normalise(vector);
  }
  // A loop, not map: map skips the holes an answer with missing items leaves.
  for (let i = 0; i < count; i++) {
    if (vectors[i] === undefined) {
      throw new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: no embedding for input ${i}`);
    }
  }
  return vectors as Float32Array[];
}

function decodeEmbedding(embedding: unknown): Float32Array {
  if (typeof embedding === 'string') {
    const bytes = Buffer.from(embedding, 'base64');
    if (bytes.length % 4 !== 0) {
      throw new AppError('ERR_EMBEDDINGS_FAILED', 'OpenAI embeddings failed: a base64 vector is not float32');
    }
    // Copied out of the (pooled, possibly unaligned) buffer into a vector of its own.
    const vector = new Float32Array(bytes.length / 4);
    new Uint8Array(vector.buffer).set(bytes);
    return vector;
  }
  if (Array.isArray(embedding) && embedding.every((v) => typeof v === 'number')) {
    return Float32Array.from(embedding);
  }
  throw new AppError(
    'ERR_EMBEDDINGS_FAILED',
    'OpenAI embeddings failed: an embedding is neither base64 nor numbers',
  );
}

/**
 * Any failure of a request as ERR_EMBEDDINGS_FAILED: HTTP statuses keep their retryability; an
 * answer too long or not JSON is not retryable; a timeout, a refused or dropped connection are. Provider text has the API key masked.
 */
function toAppError(
  err: unknown,
  timedOutAfterMs: number | null,
  redact: (text: string) => string,
): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof HttpAnswerError) {
    return new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: ${err.message}`, { cause: err });
  }
  if (timedOutAfterMs !== null) {
    return new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings timed out after ${timedOutAfterMs} ms`, {
      retryable: true,
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('ERR_EMBEDDINGS_FAILED', `OpenAI embeddings failed: ${redact(message)}`, {
    retryable: true,
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
