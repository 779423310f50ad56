/**
 * TtsClient over OpenAI `POST /audio/speech` with `response_format: 'pcm'`: raw 24 kHz 16-bit
 * little-endian mono, no header, streamed over chunked HTTP. Works with any OpenAI-compatible server
 * through `baseURL` (which must include `/v1`).
 *
 * It speaks HTTP itself (src/providers/http/) rather than through the `openai` SDK, and reads the
 * body by async iteration of the node:http response, chunk by chunk. Network chunks may split a
 * sample, so an odd byte is carried into the next chunk.
 */
import type { IncomingMessage } from 'node:http';
import { startDeadline } from '../requestDeadline.ts';
import {
  HttpAbortError,
  OPENAI_API_BASE_URL,
  createHttpClient,
  isSuccessStatus,
} from '../http/httpClient.ts';
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
  /** Must include `/v1`. Default https://api.openai.com/v1 (the app passes TTS_BASE_URL or OPENAI_BASE_URL). */
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

/** Whether this machine stores an Int16Array's samples little-endian (nearly all do). */
const HOST_LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Creates a decoder. `littleEndianHost` is for tests: on a little-endian host the bytes are copied
 * as they are (a memory copy, several times cheaper than assembling each sample).
 */
export function createPcm16Decoder(littleEndianHost: boolean = HOST_LITTLE_ENDIAN): Pcm16Decoder {
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
      if (littleEndianHost) {
        const bytes = (out.length - n) * 2;
        new Uint8Array(out.buffer, n * 2, bytes).set(chunk.subarray(i, i + bytes));
        i += bytes;
      } else {
        for (; i + 1 < chunk.length; i += 2) {
          out[n++] = ((chunk[i]! | (chunk[i + 1]! << 8)) << 16) >> 16;
        }
      }
      if (i < chunk.length) carry = chunk[i]!;
      return out;
    },
    get leftover() {
      return carry >= 0;
    },
  };
}

/** Creates the OpenAI TTS client. One connection pool serves every request, so connections are reused. */
export function createOpenAiTts(options: OpenAiTtsOptions): TtsClient {
  const model = options.model ?? DEFAULT_MODEL;
  // No retries: a caller waiting on the line cannot sit through backoff.
  const http = createHttpClient({ apiKey: options.apiKey, baseURL: options.baseURL ?? OPENAI_API_BASE_URL });
  const firstByteTimeoutMs = options.firstByteTimeoutMs ?? 4000;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const limits = { firstByteTimeoutMs, timeoutMs };

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
        let body: IncomingMessage | null = null;
        const fail = (err: unknown) => translateError(err, deadline.endedBy, body !== null, limits);
        try {
          let status: number;
          let contentType: string;
          try {
            const response = await http.request({
              method: 'POST',
              path: '/audio/speech',
              json: {
                model,
                voice,
                input: text,
                response_format: 'pcm',
                // stream_format is left at its default ('audio': raw bytes); 'sse' is not supported by tts-1.
                ...(instructions === undefined ? {} : { instructions }),
                ...(request.speed === undefined ? {} : { speed: request.speed }),
              },
              accept: 'audio/pcm, application/octet-stream;q=0.9, */*;q=0.1',
              signal: deadline.signal,
            });
            body = response.body;
            status = response.status;
            contentType = response.headers['content-type'] ?? '';
            if (!isSuccessStatus(status)) {
              // The error body is read (bounded), so the connection goes back to the pool.
              const message = await http.errorMessage(response);
              throw new TtsError('ERR_TTS_HTTP', `TTS answered HTTP ${status}: ${message}`, {
                status,
                retryable: status === 408 || status === 429 || status >= 500,
              });
            }
          } catch (err) {
            throw fail(err);
          }
          if (/json|^text\//i.test(contentType) || status === 204 || status === 205) {
            throw new TtsError(
              'ERR_TTS_BAD_RESPONSE',
              `TTS answered ${contentType || 'an empty body'}, not raw audio`,
            );
          }
          const decoder = createPcm16Decoder();
          const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer, undefined>;
          for (;;) {
            let next: IteratorResult<Buffer, undefined>;
            try {
              next = await chunks.next();
            } catch (err) {
              throw fail(err);
            }
            if (next.done === true) break;
            const chunk = next.value;
            if (chunk.length === 0) continue;
            if (firstByteMs === null) {
              firstByteMs = performance.now() - startedAt;
              deadline.firstByteArrived();
              const ms = firstByteMs;
              request.onFirstByte?.(ms);
            }
            const pcm = decoder.push(chunk);
            if (pcm.length > 0) {
              samples += pcm.length;
              yield pcm;
            }
          }
          // A body that ends quietly after an abort is still an abort.
          if (deadline.endedBy !== null) throw fail(new HttpAbortError());
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
            body?.destroy();
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

/**
 * Maps whatever a request threw onto a TtsError; the deadline's verdict wins. `answered` tells a
 * failure to connect or send (no response yet) from one while reading the audio.
 */
function translateError(
  err: unknown,
  endedBy: 'aborted' | 'timeout' | null,
  answered: boolean,
  limits: { readonly firstByteTimeoutMs: number; readonly timeoutMs: number },
): TtsError {
  if (endedBy === 'aborted' || (endedBy === null && err instanceof HttpAbortError)) {
    return new TtsError('ERR_TTS_ABORTED', 'TTS request aborted by the caller', { cause: err });
  }
  if (endedBy === 'timeout') {
    return new TtsError(
      'ERR_TTS_TIMEOUT',
      `TTS request exceeded its deadline (first byte ${limits.firstByteTimeoutMs} ms, total ${limits.timeoutMs} ms)`,
      { retryable: true, cause: err },
    );
  }
  if (err instanceof TtsError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  // Connection refused or reset, DNS, TLS; or, once answering, the socket dropped mid-stream.
  return new TtsError(
    'ERR_TTS_CONNECTION',
    answered ? `TTS stream failed: ${reason}` : `TTS connection failed: ${reason}`,
    { retryable: true, cause: err },
  );
}
