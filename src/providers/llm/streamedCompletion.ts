/**
 * What the OpenAI and Anthropic adapters share over our HTTP client (src/providers/http/): one
 * streamed completion (POST, status check, server-sent events to the adapter's parser, deadline,
 * error mapping, the result), the free model-list request that warms a connection, and the mapping
 * of whatever a request threw onto an LlmError. Each adapter keeps only its wire format: the request
 * body and how its events read.
 */
import { drainBody, isSuccessStatus, type HttpClient, type HttpResponse } from '../http/httpClient.ts';
import { SseLimitError, readSseEvents, type SseEvent } from '../http/sse.ts';
import { startDeadline, type RequestDeadline } from '../requestDeadline.ts';
import type { LlmPartial, LlmRequest, LlmResult, LlmUsage } from './llmClient.ts';
import { LlmError, endedEarlyError, llmHttpError, type LlmProvider } from './llmErrors.ts';

const NOTHING_STREAMED: LlmPartial = { text: '', usage: null, firstTokenMs: null, durationMs: 0 };

/** What an adapter's event parser reports into, while the stream lasts. */
export interface CompletionStream {
  /** Usage as the stream has told it so far (null: not told). */
  usage: LlmUsage | null;
  /** A piece of answer text: appended, timed, handed to the request's onToken. */
  token(delta: string): void;
  /** The stream said the answer is complete. */
  finish(): void;
  /** What has streamed so far, for an error. */
  partial(): LlmPartial;
  /** An event's data as JSON; anything else is ERR_LLM_BAD_RESPONSE with what has streamed so far. */
  json<T>(data: string): T;
}

export interface StreamedCompletion {
  readonly provider: LlmProvider;
  readonly http: HttpClient;
  readonly request: LlmRequest;
  readonly path: string;
  readonly body: unknown;
  /** Reads one event; returns 'stop' when the stream is over. Throws an LlmError for a bad one. */
  readonly onEvent: (event: SseEvent, stream: CompletionStream) => 'stop' | undefined;
  /** How the end marker is named in the error for a stream that ended without it. */
  readonly endMarker: string;
}

/** One streamed completion, from the request to the LlmResult; every failure is an LlmError. */
export async function streamCompletion(c: StreamedCompletion): Promise<LlmResult> {
  const { provider, http, request } = c;
  const startedAt = performance.now();
  const deadline = startDeadline(request.signal, request.timeoutMs);
  let text = '';
  let firstTokenMs: number | null = null;
  let finished = false;
  // Set inside token() (a closure): the assertion keeps TypeScript from narrowing it to null for good.
  let callbackFailure = null as { readonly error: unknown } | null;
  const stream: CompletionStream = {
    usage: null,
    token(delta) {
      firstTokenMs ??= performance.now() - startedAt;
      text += delta;
      try {
        request.onToken?.(delta);
      } catch (error) {
        // Rethrown unchanged below; leaving the stream closes it on the wire.
        callbackFailure = { error };
        throw error;
      }
    },
    finish() {
      finished = true;
    },
    partial: () => ({ text, usage: stream.usage, firstTokenMs, durationMs: performance.now() - startedAt }),
    json<T>(data: string): T {
      try {
        return JSON.parse(data) as T;
      } catch (err) {
        throw new LlmError(
          'ERR_LLM_BAD_RESPONSE',
          `${provider} sent a malformed stream: an event is not JSON`,
          {
            provider,
            partial: stream.partial(),
            cause: err,
          },
        );
      }
    },
  };

  let response: HttpResponse | null = null;
  try {
    response = await http.request({
      method: 'POST',
      path: c.path,
      json: c.body,
      accept: 'text/event-stream',
      signal: deadline.signal,
    });
    if (!isSuccessStatus(response.status)) {
      throw llmHttpError(provider, response.status, await http.errorMessage(response), stream.partial());
    }
    await readSseEvents(response.body, (event) => c.onEvent(event, stream));
  } catch (err) {
    if (callbackFailure !== null) throw callbackFailure.error;
    throw translateError(provider, err, deadline, stream.partial(), request.timeoutMs, response !== null);
  } finally {
    deadline.dispose();
  }

  if (!finished) {
    if (deadline.endedBy !== null) {
      throw endedEarlyError(deadline.endedBy, provider, stream.partial(), request.timeoutMs);
    }
    throw new LlmError('ERR_LLM_BAD_RESPONSE', `${provider} stream ended without ${c.endMarker}`, {
      provider,
      partial: stream.partial(),
    });
  }
  return {
    text,
    provider,
    model: request.model,
    usage: stream.usage,
    firstTokenMs,
    durationMs: performance.now() - startedAt,
  };
}

/**
 * GET the provider's model list (free) and read it to its end: a kept-alive connection and a TLS
 * session are left behind for the first paid request.
 */
export async function listModels(
  provider: LlmProvider,
  http: HttpClient,
  path: string,
  options: { readonly signal?: AbortSignal; readonly timeoutMs: number },
): Promise<void> {
  const deadline = startDeadline(options.signal, options.timeoutMs);
  try {
    const response = await http.request({ method: 'GET', path, signal: deadline.signal });
    if (!isSuccessStatus(response.status)) {
      throw llmHttpError(provider, response.status, await http.errorMessage(response), NOTHING_STREAMED);
    }
    await drainBody(response.body);
  } catch (err) {
    throw translateError(provider, err, deadline, NOTHING_STREAMED, options.timeoutMs);
  } finally {
    deadline.dispose();
  }
}

/**
 * Maps whatever a request threw onto an LlmError; the deadline's verdict wins. `answered` tells a
 * failure to connect or send (no response yet) from one while reading the stream.
 */
function translateError(
  provider: LlmProvider,
  err: unknown,
  deadline: RequestDeadline,
  partial: LlmPartial,
  timeoutMs: number,
  answered = false,
): LlmError {
  if (deadline.endedBy !== null) return endedEarlyError(deadline.endedBy, provider, partial, timeoutMs);
  if (err instanceof LlmError) return err;
  if (err instanceof SseLimitError) {
    return new LlmError('ERR_LLM_BAD_RESPONSE', `${provider} sent a malformed stream: ${err.message}`, {
      provider,
      partial,
      cause: err,
    });
  }
  const reason = err instanceof Error ? err.message : String(err);
  // Connection refused or reset, DNS, TLS; or, once answering, the socket dropped mid-stream.
  return new LlmError(
    'ERR_LLM_CONNECTION',
    answered ? `${provider} stream failed: ${reason}` : `${provider} connection failed: ${reason}`,
    { provider, partial, retryable: true, cause: err },
  );
}
