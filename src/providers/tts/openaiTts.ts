/**
 * TtsClient over OpenAI `audio.speech.create` with `response_format: 'pcm'`: raw 24 kHz 16-bit
 * little-endian mono, no header, streamed over chunked HTTP. Works with any OpenAI-compatible server
 * through `baseURL` (which must include `/v1`).
 *
 * The SDK hands back the fetch Response untouched for binary endpoints; its `body` is a web
 * ReadableStream, read here chunk by chunk. Network chunks may split a sample, so an odd byte is
 * carried into the next chunk.
 */
import { startDeadline } from '../requestDeadline.ts';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import {
  TtsError,
  type TtsClient,
  type TtsRequest,
  type TtsStats,
  type TtsStream,
  type TtsUsage,
} from './ttsClient.ts';
import { ttsCostUsd } from './ttsPrices.ts';

export interface OpenAiTtsOptions {
  readonly apiKey: string;
  /** Must include `/v1`. Defaults to the SDK's (OPENAI_BASE_URL or https://api.openai.com/v1). */
  readonly baseURL?: string;
  /** Default gpt-4o-mini-tts. */
  readonly model?: string;
  /** Default 'alloy'. */
  readonly voice?: string;
  /** Default speaking style for models that take one. */
  readonly instructions?: string;
  /** From the request to the first audio byte. Default 4000. */
  readonly firstByteTimeoutMs?: number;
  /** From the request to the last byte. Default 30 000. */
  readonly timeoutMs?: number;
  /** Called once per synthesis when its stream ends, however it ends. */
  readonly onUsage?: (usage: TtsUsage) => void;
}

/** OpenAI's `pcm` format has no rate parameter: it is always 24 kHz. */
export const OPENAI_PCM_SAMPLE_RATE = 24_000;
/** The API refuses longer input. */
export const OPENAI_TTS_MAX_CHARS = 4096;

const DEFAULT_MODEL = 'gpt-4o-mini-tts';
const DEFAULT_VOICE = 'alloy';

/**
 * Turns little-endian 16-bit byte chunks into samples, carrying a split sample across chunks.
 * `leftover` is true while half a sample waits for its other byte.
 */
export interface Pcm16Decoder {
  push(chunk: Uint8Array): Int16Array;
  readonly leftover: boolean;
}

export function createPcm16Decoder(): Pcm16Decoder {
  let carry = -1;
  return {
    push(chunk) {
      const total = chunk.length + (carry >= 0 ? 1 : 0);
      const out = new Int16Array(total >> 1);
      let n = 0;
      let i = 0;
      if (carry >= 0 && chunk.length > 0) {
        out[n++] = ((carry | (chunk[0]! << 8)) << 16) >> 16;
        i = 1;
        carry = -1;
      }
      for (; i + 1 < chunk.length; i += 2) {
        out[n++] = ((chunk[i]! | (chunk[i + 1]! << 8)) << 16) >> 16;
      }
      if (i < chunk.length) carry = chunk[i]!;
      return out;
    },
    get leftover() {
      return carry >= 0;
    },
  };
}

/** Creates the OpenAI TTS client. One SDK instance serves every request, so connections are reused. */
export function createOpenAiTts(options: OpenAiTtsOptions): TtsClient {
  const model = options.model ?? DEFAULT_MODEL;
  // No SDK retries: a caller waiting on the line cannot sit through backoff.
  const client = new OpenAI({
    apiKey: options.apiKey,
    maxRetries: 0,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
  });
  const firstByteTimeoutMs = options.firstByteTimeoutMs ?? 4000;
  const timeoutMs = options.timeoutMs ?? 30_000;

  return {
    provider: 'openai',
    model,
    sampleRate: OPENAI_PCM_SAMPLE_RATE,
    synthesize(text: string, request: TtsRequest = {}): TtsStream {
      const voice = request.voice ?? options.voice ?? DEFAULT_VOICE;
      const instructions = request.instructions ?? options.instructions;
      let outcome: TtsStats['outcome'] = 'streaming';
      let firstByteMs: number | null = null;
      let samples = 0;
      let durationMs: number | null = null;

      async function* run(): AsyncGenerator<Int16Array, void, undefined> {
        if (text.length > OPENAI_TTS_MAX_CHARS) {
          outcome = 'failed';
          throw new TtsError(
            'ERR_TTS_INPUT',
            `TTS input is ${text.length} characters; the limit is ${OPENAI_TTS_MAX_CHARS}`,
          );
        }
        // Nothing to say costs nothing: no request at all.
        if (text.trim() === '') {
          outcome = 'complete';
          durationMs = 0;
          return;
        }
        const startedAt = performance.now();
        const deadline = startDeadline(request.signal, timeoutMs, firstByteTimeoutMs);
        let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
        try {
          let response: Response;
          try {
            response = await client.audio.speech.create(
              {
                model,
                voice,
                input: text,
                response_format: 'pcm',
                // stream_format is left at its default ('audio': raw bytes); 'sse' is not supported by tts-1.
                ...(instructions === undefined ? {} : { instructions }),
                ...(request.speed === undefined ? {} : { speed: request.speed }),
              },
              { signal: deadline.signal },
            );
          } catch (err) {
            throw translateError(err, deadline.endedBy, firstByteTimeoutMs, timeoutMs);
          }
          const contentType = response.headers.get('content-type') ?? '';
          if (/json|^text\//i.test(contentType) || response.body === null) {
            throw new TtsError(
              'ERR_TTS_BAD_RESPONSE',
              `TTS answered ${contentType || 'an empty body'}, not raw audio`,
            );
          }
          reader = response.body.getReader();
          const decoder = createPcm16Decoder();
          for (;;) {
            let chunk: Awaited<ReturnType<typeof reader.read>>;
            try {
              chunk = await reader.read();
            } catch (err) {
              throw translateError(err, deadline.endedBy, firstByteTimeoutMs, timeoutMs);
            }
            if (chunk.done) break;
            if (chunk.value.length === 0) continue;
            if (firstByteMs === null) {
              firstByteMs = performance.now() - startedAt;
              deadline.firstByteArrived();
              const ms = firstByteMs;
              request.onFirstByte?.(ms);
            }
            const pcm = decoder.push(chunk.value);
            if (pcm.length > 0) {
              samples += pcm.length;
              yield pcm;
            }
          }
          // A body that ends quietly after an abort is still an abort.
          if (deadline.endedBy !== null) {
            throw translateError(new APIUserAbortError(), deadline.endedBy, firstByteTimeoutMs, timeoutMs);
          }
          // A dangling odd byte is half a sample: dropped, as nothing can complete it.
          outcome = 'complete';
        } catch (err) {
          outcome = err instanceof TtsError && err.code === 'ERR_TTS_ABORTED' ? 'aborted' : 'failed';
          throw err;
        } finally {
          if (outcome === 'streaming') outcome = 'aborted'; // the consumer left the loop
          if (outcome !== 'complete') {
            // Closes the socket, so the server stops generating (and, hopefully, billing).
            deadline.abort();
            reader?.cancel().catch(() => undefined);
          }
          deadline.dispose();
          durationMs = performance.now() - startedAt;
          reportUsage(outcome, durationMs);
        }
      }

      const reportUsage = (end: 'complete' | 'aborted' | 'failed', ms: number) => {
        if (options.onUsage === undefined && request.onUsage === undefined) return;
        const audioSeconds = samples / OPENAI_PCM_SAMPLE_RATE;
        const cost = ttsCostUsd(model, { characters: text.length, audioSeconds });
        const usage: TtsUsage = {
          provider: 'openai',
          model,
          voice,
          characters: text.length,
          audioSeconds,
          costUsd: cost?.costUsd ?? null,
          estimated: cost === null ? true : cost.estimated || end !== 'complete',
          outcome: end,
          durationMs: ms,
        };
        // A failing cost sink must not break the audio, nor keep the other sink from hearing of it.
        for (const sink of [options.onUsage, request.onUsage]) {
          try {
            sink?.(usage);
          } catch {
            // Dropped: cost reporting is best effort from here.
          }
        }
      };

      const iterator = run();
      return {
        sampleRate: OPENAI_PCM_SAMPLE_RATE,
        [Symbol.asyncIterator]: () => iterator,
        get stats(): TtsStats {
          return {
            outcome,
            firstByteMs,
            samples,
            audioSeconds: samples / OPENAI_PCM_SAMPLE_RATE,
            durationMs,
          };
        },
      };
    },
  };
}

/** Maps whatever the SDK (or fetch beneath it) threw onto a TtsError; the deadline's verdict wins. */
function translateError(
  err: unknown,
  endedBy: 'aborted' | 'timeout' | null,
  firstByteTimeoutMs: number,
  timeoutMs: number,
): TtsError {
  if (err instanceof TtsError) return err;
  if (endedBy === 'aborted' || (endedBy === null && err instanceof APIUserAbortError)) {
    return new TtsError('ERR_TTS_ABORTED', 'TTS request aborted by the caller', { cause: err });
  }
  if (endedBy === 'timeout' || err instanceof APIConnectionTimeoutError) {
    return new TtsError(
      'ERR_TTS_TIMEOUT',
      `TTS request exceeded its deadline (first byte ${firstByteTimeoutMs} ms, total ${timeoutMs} ms)`,
      { retryable: true, cause: err },
    );
  }
  if (err instanceof APIConnectionError) {
    return new TtsError('ERR_TTS_CONNECTION', `TTS connection failed: ${err.message}`, {
      retryable: true,
      cause: err,
    });
  }
  if (err instanceof APIError && typeof err.status === 'number') {
    return new TtsError('ERR_TTS_HTTP', `TTS answered HTTP ${err.status}: ${err.message}`, {
      status: err.status,
      retryable: err.status === 408 || err.status === 429 || err.status >= 500,
      cause: err,
    });
  }
  // Anything else came from reading the body, e.g. undici's "terminated" when the socket drops.
  return new TtsError('ERR_TTS_CONNECTION', `TTS stream failed: ${String(err)}`, {
    retryable: true,
    cause: err,
  });
}
